"""Applies in child processes: they apply exactly like the serving process would, and a killed
child is replaced without restarting xenbot (its request is resumed by the housekeeper)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import select, update

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.services.apply_process import ApplyProcesses
from bot.services.changes import Scope
from bot.services.messenger import NullMessenger
from bot.settings import Settings
from tests.services.test_apply import LEAD, request, stack, state


def null_messenger(_settings: Settings) -> NullMessenger:
    return NullMessenger()


def test_an_apply_process_applies_and_a_killed_one_is_replaced(sim, db_url):
    services, _ = stack(sim, db_url)
    processes = ApplyProcesses(services.settings, null_messenger, processes=1)
    try:
        first = request(services, Scope("vm", "win7-kiosk"), "tx")
        services.changes.approve(LEAD, first)
        assert processes.submit(first, LEAD).result(timeout=60) == State.APPLIED
        with services.sessions() as session:
            results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == first)).all()
        assert [r.status for r in results] == ["applied"]

        for pid in list(processes._pool._processes or {}):  # the OOM killer, or an operator
            os.kill(pid, signal.SIGKILL)
        second = request(services, Scope("vm", "win2019-dc01"), "tx")
        services.changes.approve(LEAD, second)
        assert processes.submit(second, LEAD).result(timeout=60) == State.APPLIED
        assert state(services, second) == State.APPLIED
    finally:
        processes.close()
        services.close()


def test_recovery_runs_in_an_apply_process_and_is_handed_over_once(sim, db_url):
    """A request left applying by a dead replica is resumed in a child, not on the serving
    process's housekeeper thread; asking again while it runs does not queue it twice."""
    services, _ = stack(sim, db_url)
    processes = ApplyProcesses(services.settings, null_messenger, processes=1)
    services.apply.recovery_runner = processes.recover
    try:
        request_id = request(services, Scope("pool", "demo"), "tx")
        services.changes.approve(LEAD, request_id)
        with services.sessions.begin() as session:
            session.execute(update(ChangeRequest).where(ChangeRequest.id == request_id).values(
                state=State.APPLYING, executor="gone-host:1:dead", heartbeat_at=None))
        sim.faults.latency(50, "*.add_to_other_config")  # long enough to ask again meanwhile
        assert services.apply.recover(lease=timedelta(0)) == [request_id]
        assert services.apply.recover(lease=timedelta(0)) == []  # already handed over
        deadline = time.monotonic() + 60
        while state(services, request_id) != State.APPLIED:
            assert time.monotonic() < deadline, "the recovery did not finish"
            time.sleep(0.1)
        with services.sessions() as session:
            executor = session.get(ChangeRequest, request_id).executor
        assert executor is not None and int(executor.split(":")[1]) != os.getpid()
    finally:
        sim.clear_faults()
        processes.close()
        services.close()


def test_building_the_cli_leaves_prometheus_unimported_so_serve_can_share_metrics():
    """prometheus-client picks single- or multi-process storage when first imported; `xenbot serve`
    chooses after parsing its settings, so nothing on the way there may import it."""
    code = "import sys, bot.cli; bot.cli.build_parser(); print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_apply_process_reads_its_pools_before_the_first_approval(sim, db_url):
    """The first approval must not pay the child's full read of the pool (3.9 s at 5,000 VMs):
    children read their pools in the background as they start and keep them current."""
    services, _ = stack(sim, db_url)
    request_id = request(services, Scope("pool", "demo"), "tx")
    services.changes.approve(LEAD, request_id)
    sim.reset_call_counts()
    processes = ApplyProcesses(services.settings, null_messenger, processes=1)
    try:
        deadline = time.monotonic() + 60
        classes = ("pool", "host", "VM", "VM_guest_metrics", "VIF", "PIF", "network")
        while not all(sim.call_counts().get(f"{c}.get_all_records") for c in classes):  # the child's warm-up
            assert time.monotonic() < deadline, "the apply process never read its pool"
            time.sleep(0.1)
        sim.reset_call_counts()
        assert processes.submit(request_id, LEAD).result(timeout=60) == State.APPLIED
        full_reads = {m: n for m, n in sim.call_counts().items() if m.endswith(".get_all_records")}
        assert full_reads == {}, f"the approval paid a full read: {full_reads}"
    finally:
        processes.close()


PARENT = """
import pickle, sys, time
from bot.services.apply_process import ApplyProcesses
from tests.services.test_apply_process import null_messenger

settings = pickle.loads(bytes.fromhex(sys.argv[1]))
processes = ApplyProcesses(settings, null_messenger, processes=1)
processes.submit(int(sys.argv[2]), "U0LEAD")
print(" ".join(map(str, processes._pool._processes)), flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\\nState:\\tZ" in status.read()  # a zombie has exited; only its reaping is left
    except FileNotFoundError:
        return True


def test_apply_processes_hand_over_and_exit_when_serve_is_killed(sim, db_url):
    """A SIGKILLed serve leaves no apply process behind: the child finishes the interfaces in
    flight, leaves the rest to recovery, and exits; the next housekeeper finishes the change."""
    services, _ = stack(sim, db_url)
    try:
        request_id = request(services, Scope("pool", "demo"), "tx")
        services.changes.approve(LEAD, request_id)
        sim.faults.latency(1000, "*.add_to_other_config")  # slow writes: the apply is under way when serve dies
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, pickle.dumps(services.settings).hex(), str(request_id)],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            children = [int(pid) for pid in parent.stdout.readline().split()]  # type: ignore[union-attr]
            assert children
            deadline = time.monotonic() + 60
            while state(services, request_id) != State.APPLYING:
                assert time.monotonic() < deadline, "the apply did not start"
                time.sleep(0.05)
        finally:
            parent.kill()
            parent.wait(10)
        deadline = time.monotonic() + 30
        while not all(_gone(pid) for pid in children):
            assert time.monotonic() < deadline, f"apply processes {children} outlived their parent"
            time.sleep(0.05)
        assert state(services, request_id) == State.APPLYING  # handed over, not finished
        sim.clear_faults()
        assert services.apply.recover(lease=timedelta(0)) == [request_id]
        assert state(services, request_id) == State.APPLIED
        with services.sessions() as session:
            results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
        assert results and {r.status for r in results} == {"applied"}
    finally:
        sim.clear_faults()
        services.close()
