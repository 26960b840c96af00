"""`ControlActivities`: the job graphs' CPU-queue activities in one class, with their clients injected.

Each concern lives in its own module (`script`, `profiles`, `render_plan`, `outputs`); this class
only holds the clients they share, so the CPU worker and tests build one object and pass fakes
or real servers.
"""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.outputs import OutputActivities
from activities.profiles import ProfileActivities
from activities.render_plan import RenderPlanActivities
from activities.script import ScriptActivities
from activities.script_writer import ScriptWriter
from core.storage import ObjectStore


class ControlActivities(ScriptActivities, ProfileActivities, RenderPlanActivities, OutputActivities):
    """CPU activities with their clients injected, so tests can pass fakes or real servers."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ObjectStore, writer: ScriptWriter) -> None:
        self._sessions = sessions
        self._store = store
        self._writer = writer

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The database sessions these activities use."""
        return self._sessions

    @property
    def store(self) -> ObjectStore:
        """The object store these activities use."""
        return self._store
