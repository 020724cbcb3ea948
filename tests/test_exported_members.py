"""`demur.__all__` lists exactly the public names, sorted, and they all import."""

import inspect

import demur


def test_all_is_sorted_and_complete():
    public = {
        name
        for name in dir(demur)
        if not name.startswith("_") and not inspect.ismodule(getattr(demur, name))
    }
    assert set(demur.__all__) - {"__version__"} == public
    assert demur.__all__ == sorted(demur.__all__)


def test_import_demur_does_not_import_heavy_integrations():
    import subprocess
    import sys

    code = (
        "import sys, demur\n"
        "heavy = [m for m in ('llama_cpp', 'httpx', 'yaml', 'rich', 'chromadb', 'llama_index',"
        " 'langchain_core') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_demur_leaves_the_review_queue_to_its_first_use():
    import subprocess
    import sys

    code = (
        "import sys, demur\n"
        "print(','.join(m for m in sys.modules if m.startswith('demur.queue')))\n"
        "demur.Ticket\n"
        "print('demur.queue.base' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["", "True"]


def test_lazy_exports_resolve():
    for name in ("configure_telemetry", "load_router", "LlamaCppModel", "OpenAICompatibleModel"):
        assert getattr(demur, name).__name__ == name
