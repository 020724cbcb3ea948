"""A request's max_tokens, temperature, stop and seed reach the models; what the gateway
cannot honour is a 400 naming the field."""

from __future__ import annotations

import httpx
import openai
import pytest

from demur import Reply, ScriptedModel
from tests.server.conftest import KEY, running, scripted_router

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10)


def ask(server, **fields: object) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "demur", "messages": QUESTION, **fields},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )


def models(router) -> tuple[ScriptedModel, ScriptedModel]:
    weak, strong = router.models["weak"], router.models["strong"]
    assert isinstance(weak, ScriptedModel) and isinstance(strong, ScriptedModel)
    return weak, strong


def test_max_tokens_temperature_stop_and_seed_reach_every_model_of_the_route():
    router = scripted_router()  # weak is unsure: strong answers too
    with running(router) as server:
        completion = client(server).chat.completions.create(
            model="demur",
            messages=QUESTION,
            max_tokens=7,
            temperature=0.4,
            stop=["END"],
            seed=11,
        )
    assert completion.choices[0].message.content == "Paris is the capital"
    for model in models(router):
        request = model.calls[0]
        assert (request.max_tokens, request.temperature, request.seed) == (7, 0.4, 11)
        assert request.stop == ("\n", "END")  # added to the prompt's own


def test_max_completion_tokens_is_max_tokens_by_its_newer_name():
    router = scripted_router(Reply.confident("Paris", 0.9))
    with running(router) as server:
        assert ask(server, max_completion_tokens=3, stop="END").status_code == 200
    request = models(router)[0].calls[0]
    assert request.max_tokens == 3 and request.stop == ("\n", "END")


def test_without_settings_the_routers_own_apply():
    router = scripted_router(Reply.confident("Paris", 0.9))
    with running(router) as server:
        assert ask(server).status_code == 200
    request = models(router)[0].calls[0]
    assert (request.max_tokens, request.temperature, request.seed) == (64, 0.0, None)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -5}, "max_completion_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ["a", ""]}, "stop[1]"),
        ({"stop": ""}, "stop"),
        ({"seed": -1}, "seed"),
    ],
)
def test_a_setting_out_of_range_is_400_naming_it(gateway, fields, param):
    response = ask(gateway, **fields)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and param.split("[")[0] in error["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_p": 0.5}, "top_p"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
    ],
)
def test_a_setting_the_gateway_cannot_honour_is_400_naming_it(gateway, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="demur", messages=QUESTION, **fields)
    assert caught.value.param == param and caught.value.code == "unsupported_parameter"
    assert f"leave {param} out" in caught.value.message


def test_openais_defaults_for_unsupported_settings_pass(gateway):
    defaults = {"top_p": 1, "frequency_penalty": 0, "presence_penalty": 0, "logprobs": False}
    response = ask(gateway, **defaults, logit_bias={}, top_logprobs=0)
    assert response.status_code == 200
