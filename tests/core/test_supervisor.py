"""`devstack.supervisor`: dead apps restart with backoff, a crash loop is given up, and states say which is which."""

from dataclasses import dataclass

from devstack.supervisor import Supervisor


@dataclass
class FakeProcess:
    name: str
    running: bool = True

    def alive(self) -> bool:
        return self.running


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervise() -> tuple[Supervisor, Clock, list[str]]:
    clock, started = Clock(), []

    def start(name: str) -> FakeProcess:
        started.append(name)
        return FakeProcess(name)

    return Supervisor(start, clock=clock, backoff=(1, 2, 4), crash_loop=(3, 60)), clock, started


def test_a_dead_app_is_restarted_after_its_backoff_and_the_others_are_left_alone() -> None:
    supervisor, clock, started = supervise()
    apps = {"api": FakeProcess("api"), "gpu-worker": FakeProcess("gpu-worker")}
    supervisor.check(apps)
    assert started == [] and supervisor.states(apps) == {"api": "running", "gpu-worker": "running"}

    apps["gpu-worker"].running = False
    supervisor.check(apps)
    assert started == [] and supervisor.states(apps)["gpu-worker"] == "restarting in 1 s"
    clock.now += 1
    supervisor.check(apps)
    assert started == ["gpu-worker"] and apps["gpu-worker"].alive() and supervisor.states(apps)["api"] == "running"

    apps["gpu-worker"].running = False  # dies again soon: a longer wait
    clock.now += 5
    supervisor.check(apps)
    assert supervisor.states(apps)["gpu-worker"] == "restarting in 2 s"


def test_a_crash_loop_is_given_up_and_deaths_long_ago_are_forgotten() -> None:
    supervisor, clock, started = supervise()
    apps = {"cpu-worker": FakeProcess("cpu-worker")}
    for wait in (1, 2):
        apps["cpu-worker"].running = False
        supervisor.check(apps)
        clock.now += wait
        supervisor.check(apps)
    assert started == ["cpu-worker"] * 2
    clock.now += 120  # the earlier deaths left the window
    apps["cpu-worker"].running = False
    supervisor.check(apps)
    assert supervisor.states(apps)["cpu-worker"] == "restarting in 1 s", "a fresh first death"

    clock.now += 1
    supervisor.check(apps)
    for _ in range(2):
        apps["cpu-worker"].running = False
        supervisor.check(apps)
        clock.now += 4
        supervisor.check(apps)
    assert supervisor.states(apps)["cpu-worker"] == "gave up"
    count = len(started)
    clock.now += 100
    supervisor.check(apps)
    assert len(started) == count, "no restarts once given up"
