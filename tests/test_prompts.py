from demur import ChatPrompt, CompletionPrompt, FewShotExample, Query

EXAMPLE = FewShotExample(
    context="Emma is by Jane Austen.", question="Who wrote Emma?", answer="Jane Austen"
)


def test_chat_prompt_without_context_or_examples():
    request = ChatPrompt(system="Be brief.").render(Query("Capital of France?"))
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].content == "Question: Capital of France?"
    assert request.prompt is None
    assert request.stop == ("\n",)


def test_chat_prompt_puts_examples_before_the_question_as_turns():
    prompt = ChatPrompt(system="", examples=(EXAMPLE,))
    request = prompt.render(Query("Capital of France?", context=("Paris is the capital.",)))
    roles = [m.role for m in request.messages]
    assert roles == ["user", "assistant", "user"]
    assert (
        request.messages[0].content
        == "Passage: Emma is by Jane Austen.\n\nQuestion: Who wrote Emma?"
    )
    assert request.messages[1].content == "Jane Austen"
    assert request.messages[2].content.startswith("Passage: Paris is the capital.")


def test_examples_drop_their_passage_when_the_query_has_none():
    request = ChatPrompt(examples=(EXAMPLE,)).render(Query("Capital of France?"))
    assert request.messages[1].content == "Question: Who wrote Emma?"


def test_completion_prompt_is_few_shot_text_ending_in_an_open_answer():
    request = CompletionPrompt(examples=(EXAMPLE,)).render(
        Query("Capital of France?", context=("Paris is the capital.", "It is large."))
    )
    assert request.messages is None
    assert request.prompt.endswith(
        "Passage: Paris is the capital.\n\nIt is large.\nQuestion: Capital of France?\nAnswer:"
    )
    assert request.prompt.startswith(
        "Passage: Emma is by Jane Austen.\nQuestion: Who wrote Emma?\nAnswer: Jane Austen"
    )
