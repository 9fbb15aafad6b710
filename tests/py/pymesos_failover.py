#!/usr/bin/env python3
"""Scheduler failover with pymesos, in two processes (run by
tests/failover.rs; install pymesos with tests/py/setup-pymesos.sh).

  first      subscribes with --failover-timeout, launches one long task
             (`sleep 1000`, cpus 0.1, mem 32), acknowledges its TASK_STARTING
             but not its TASK_RUNNING, prints {"event": "running_unacked"} and
             then waits to be killed (SIGKILL: no TEARDOWN, no goodbye).
  successor  subscribes with --framework-id (the first one's) and a new,
             usually shorter --failover-timeout; expects the task's pending
             TASK_RUNNING (resent by the agent, with its uuid), acknowledges
             it, reconciles the task explicitly, waits for the answer
             (TASK_RUNNING, REASON_RECONCILIATION) and stops the driver in
             failover mode (no TEARDOWN), so that the framework outlives it
             for its failover timeout.

Every status update and milestone is printed as one JSON line on stdout
(the framework id in {"event": "registered" or, when subscribing with an
id, "reregistered", "framework_id": ...});
everything else goes to stderr.

Exit: 0 on success, 1 on an unexpected state, an ERROR event or a driver
crash, 2 for bad arguments, 3 on the overall timeout.

    target/py/bin/python tests/py/pymesos_failover.py first --master H:P --task-id T
    target/py/bin/python tests/py/pymesos_failover.py successor --master H:P \\
        --framework-id F --task-id T --failover-timeout 2
"""

import argparse
import getpass
import json
import logging
import socket
import sys
import threading
import time

try:
    from pymesos import MesosSchedulerDriver, Scheduler
except ImportError:
    sys.exit("pymesos is not installed: run tests/py/setup-pymesos.sh and use target/py/bin/python")


def log(msg):
    print("pymesos_failover: " + msg, file=sys.stderr, flush=True)


def emit(event, **fields):
    fields["event"] = event
    print(json.dumps(fields, sort_keys=True), flush=True)


class FailoverScheduler(Scheduler):
    def __init__(self, mode, task_id):
        self.mode = mode
        self.task_id = task_id
        self.launched = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.exit_code = None
        self.reconciling = False

    def finish(self, code, why):
        with self.lock:
            if self.exit_code is None:
                self.exit_code = code
                log(why)
        self.done.set()

    def registered(self, driver, framework_id, master_info):
        emit("registered", framework_id=framework_id.value)

    def reregistered(self, driver, master_info):
        # pymesos' callback when it subscribed with a framework id.
        emit("reregistered", framework_id=driver.framework_id)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                launch = self.mode == "first" and not self.launched
                self.launched = self.launched or launch
            if not launch:
                driver.declineOffer(offer.id, {"refuse_seconds": 3600})
                continue
            # Resources shaped as offered (role, allocation info).
            resources = []
            for name, amount in (("cpus", 0.1), ("mem", 32.0)):
                template = next(r for r in offer.resources if r.name == name)
                r = {k: v for k, v in template.items()
                     if k in ("role", "reservation", "reservations", "allocation_info")}
                r.update(name=name, type="SCALAR", scalar={"value": amount})
                resources.append(r)
            driver.launchTasks(offer.id, [{
                "task_id": {"value": self.task_id},
                "agent_id": {"value": offer.agent_id.value},
                "name": self.task_id,
                "resources": resources,
                "command": {"value": "sleep 1000", "shell": True},
            }])
            driver.suppressOffers()

    def statusUpdate(self, driver, update):
        print(json.dumps(update, sort_keys=True), flush=True)
        if update.task_id.value != self.task_id:
            self.ack(driver, update)
            return
        state, reason = update.state, update.get("reason")
        if state not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            self.ack(driver, update)
            self.finish(1, "task %s: %s %s %s" % (
                self.task_id, state, reason or "", update.get("message", "")))
            return
        if self.mode == "first":
            if state == "TASK_RUNNING":
                # Left unacknowledged: the agent keeps it pending and resends
                # it, so the successor must receive it.
                emit("running_unacked", uuid=update.get("uuid"))
            else:
                self.ack(driver, update)
            return
        # The successor.
        if reason == "REASON_RECONCILIATION":
            if self.reconciling and state == "TASK_RUNNING":
                emit("reconciled", state=state)
                self.finish(0, "the pending update arrived and reconciliation answered")
            return
        if state == "TASK_RUNNING" and "uuid" in update and not self.reconciling:
            emit("pending_update", uuid=update.uuid)
            self.ack(driver, update)
            self.reconciling = True
            driver.reconcileTasks([{
                "task_id": {"value": self.task_id},
                "agent_id": {"value": update.agent_id.value},
            }])
            return
        self.ack(driver, update)

    def ack(self, driver, status):
        # Updates without uuid come from the master and are not acknowledged.
        if "uuid" in status:
            driver.acknowledgeStatusUpdate(status)

    def error(self, driver, message):
        self.finish(1, "ERROR event from the master: %s" % message)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("first", "successor"))
    p.add_argument("--master", required=True, help="HOST:PORT of the master")
    p.add_argument("--task-id", required=True)
    p.add_argument("--framework-id", help="successor: the framework to take over")
    p.add_argument("--failover-timeout", type=float, default=60.0,
                   help="seconds the framework outlives its scheduler (default 60)")
    p.add_argument("--timeout", type=float, default=60.0, help="overall seconds (default 60)")
    p.add_argument("-v", "--verbose", action="store_true", help="pymesos debug logging")
    a = p.parse_args()
    if a.mode == "successor" and not a.framework_id:
        p.error("successor needs --framework-id")
    if a.failover_timeout <= 0 or a.timeout <= 0:
        p.error("timeouts must be positive")
    logging.getLogger("pymesos").setLevel(logging.DEBUG if a.verbose else logging.WARNING)

    framework = {
        "user": getpass.getuser(),
        "name": "berth-pymesos-failover",
        "hostname": socket.gethostname(),
        "failover_timeout": a.failover_timeout,
        "checkpoint": True,
    }
    if a.framework_id:
        framework["id"] = {"value": a.framework_id}
    sched = FailoverScheduler(a.mode, a.task_id)
    driver = MesosSchedulerDriver(sched, framework, a.master, use_addict=True,
                                  implicit_acknowledgements=False)
    deadline = time.monotonic() + a.timeout
    driver.start()
    try:
        # Short waits: pymesos reports a crash of its IO thread by
        # interrupting the main thread, which needs it to wake up. The first
        # scheduler runs until it is killed (or times out).
        while not sched.done.wait(0.2):
            if time.monotonic() >= deadline:
                sched.finish(3, "timed out after %gs" % a.timeout)
    except KeyboardInterrupt:
        sched.finish(1, "interrupted (or the pymesos driver failed; see above)")
    except Exception as e:  # the driver thread's exception, re-raised here
        sched.finish(1, "pymesos driver failed: %r" % (e,))
    finally:
        # Failover mode: no TEARDOWN; the framework stays for its timeout.
        driver.stop(failover=True)
        driver.join()
    return sched.exit_code


if __name__ == "__main__":
    sys.exit(main())
