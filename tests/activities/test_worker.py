"""The CPU worker's manifest: the languages its script writer can write."""

from activities.script_writer import OfflineScriptWriter, OllamaScriptWriter
from activities.worker import manifest
from core.settings import Settings
from schemas.capabilities import ANY_LANGUAGE


def test_the_offline_writer_advertises_english_and_an_llm_any_language() -> None:
    settings = Settings()
    offline = manifest(settings, OfflineScriptWriter(), "cpu-1")
    assert offline.languages == ["en"] and offline.llm_mode == "offline"
    llm = manifest(settings, OllamaScriptWriter("http://ollama.test", "m", 5), "cpu-1")
    assert llm.languages == [ANY_LANGUAGE] and llm.llm_mode == "ollama"
