"""`script.generateScript`: the user's script as given, or one the configured writer writes."""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.script_writer import ScriptRejected, ScriptWriter
from schemas import names
from schemas.tasks import ScriptInput, ScriptResult


class ScriptActivities:
    """The script activity; `ControlActivities` provides the writer."""

    _writer: ScriptWriter

    @activity.defn(name=names.GENERATE_SCRIPT)
    async def generate_script(self, inp: ScriptInput) -> ScriptResult:
        """Use the user's script if given, else ask the configured writer (seed §4.2)."""
        if inp.given is not None:
            stage = inp.given.stage or f"A presenter in a bright studio talking about {inp.topic}."
            return ScriptResult(script=inp.given.model_copy(update={"stage": stage}), source="user")
        try:
            script = await self._writer.write(inp)
        except ScriptRejected as err:
            raise ApplicationError(str(err), type=names.ERR_SCRIPT_INVALID, non_retryable=True) from err
        activity.logger.info("script written by %s (%d words)", self._writer.source, len(script.narrative.split()))
        return ScriptResult(script=script, source=self._writer.source)
