#!/usr/bin/env python3
"""A real pymesos framework, to check Berth's master against the Python
client Mesos users actually have (install it with tests/py/setup-pymesos.sh).

It subscribes through pymesos' MesosSchedulerDriver (use_addict=True),
launches N command tasks `echo hello-$i` (cpus 0.1, mem 32 each), packing as
many as fit into each offer and declining the rest, prints every status
update as one JSON line on stdout (everything else goes to stderr) and
stops the driver (which sends TEARDOWN).

Exit: 0 when all N tasks reached TASK_FINISHED (and, with --reconcile, a
reconciliation answer arrived), 1 on a failed task (TASK_FAILED, _ERROR,
_LOST, _KILLED, _DROPPED, _GONE...), an ERROR event or a driver crash, 2 for
bad arguments, 3 on the overall timeout.

--reconcile: acknowledges every update except the tasks' terminal ones, then
sends an implicit reconciliation (reconcileTasks([])) and waits for an update
with reason REASON_RECONCILIATION before acknowledging the held updates.
Holding the acknowledgements matters: Mesos answers an implicit
reconciliation only for tasks it still tracks, and a task whose terminal
update has been acknowledged is no longer tracked, so the reply would
legitimately be empty.

    target/py/bin/python tests/py/pymesos_scheduler.py [--master HOST:PORT] [N]
"""

import argparse
import getpass
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid

try:
    from pymesos import MesosSchedulerDriver, Scheduler
except ImportError:
    sys.exit("pymesos is not installed: run tests/py/setup-pymesos.sh and use target/py/bin/python")

CPUS = 0.1
MEM = 32.0
# Short, so that declined resources come back quickly while tasks are still
# waiting for room; Mesos' default is 5 s.
DECLINE_REFUSE_SECONDS = 1.0
FAILED_STATES = {
    "TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_KILLED", "TASK_DROPPED",
    "TASK_GONE", "TASK_GONE_BY_OPERATOR",
}


def log(msg):
    print("pymesos_scheduler: " + msg, file=sys.stderr, flush=True)


def scalar(resource):
    if resource.get("type") != "SCALAR":
        return 0.0
    return float(resource.get("scalar", {}).get("value", 0.0))


class Offer:
    """What is left of one offer while tasks are packed into it."""

    def __init__(self, offer):
        self.offer = offer
        self.left = {"cpus": 0.0, "mem": 0.0}
        # The first plain (non-volume, non-revocable) resource of each name:
        # task resources copy its role/reservation/allocation_info so that
        # they match what was offered.
        self.template = {}
        for r in offer.get("resources", []):
            name = r.get("name")
            if name in self.left and "disk" not in r and "revocable" not in r:
                self.left[name] += scalar(r)
                self.template.setdefault(name, r)

    def take(self):
        """Resources for one task, or None when the offer is used up."""
        # Mesos scalars are fixed-point with 3 decimals: compare with slack.
        if self.left["cpus"] + 1e-9 < CPUS or self.left["mem"] + 1e-9 < MEM:
            return None
        out = []
        for name, amount in (("cpus", CPUS), ("mem", MEM)):
            self.left[name] -= amount
            r = {k: v for k, v in self.template[name].items()
                 if k in ("role", "reservation", "reservations", "allocation_info")}
            r.update(name=name, type="SCALAR", scalar={"value": amount})
            out.append(r)
        return out


class HelloScheduler(Scheduler):
    def __init__(self, n, reconcile):
        self.n = n
        self.reconcile = reconcile
        self.run_id = uuid.uuid4().hex[:8]
        self.pending = list(range(n))
        self.finished = set()
        self.held_acks = []
        self.reconcile_sent = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.exit_code = None

    def finish(self, code, why):
        with self.lock:
            if self.exit_code is None:
                self.exit_code = code
                log(why)
        self.done.set()

    def registered(self, driver, framework_id, master_info):
        log("registered as framework %s with master %s:%s (version %s)" % (
            framework_id.value, master_info.hostname, master_info.port,
            master_info.get("version", "?")))

    def reregistered(self, driver, master_info):
        log("re-registered with master %s:%s" % (master_info.hostname, master_info.port))

    def disconnected(self, driver):
        # pymesos also calls this when the driver is stopped at the end.
        if not self.done.is_set():
            log("disconnected from the master; pymesos will re-subscribe")

    def resourceOffers(self, driver, offers):
        for offer in offers:
            packed = Offer(offer)
            tasks = []
            with self.lock:
                while self.pending:
                    resources = packed.take()
                    if resources is None:
                        break
                    i = self.pending.pop(0)
                    tasks.append({
                        "task_id": {"value": "pymesos-%s-%d" % (self.run_id, i)},
                        "agent_id": {"value": offer.agent_id.value},
                        "name": "hello-%d" % i,
                        "resources": resources,
                        "command": {"value": "echo hello-%d" % i, "shell": True},
                    })
            if tasks:
                log("launching %s on %s (offer %s)" % (
                    ", ".join(t["name"] for t in tasks), offer.hostname, offer.id.value))
                driver.launchTasks(offer.id, tasks)
            else:
                driver.declineOffer(offer.id, {"refuse_seconds": DECLINE_REFUSE_SECONDS})
        with self.lock:
            all_launched = not self.pending
        if all_launched:
            # No more offers wanted; declined ones would come back otherwise.
            driver.suppressOffers()

    def offerRescinded(self, driver, offer_id):
        log("offer %s rescinded" % offer_id.value)

    def statusUpdate(self, driver, update):
        print(json.dumps(update, sort_keys=True), flush=True)
        task_id = update.task_id.value
        if not task_id.startswith("pymesos-%s-" % self.run_id):
            self.ack(driver, update)
            return
        state = update.state
        if update.get("reason") == "REASON_RECONCILIATION":
            self.ack(driver, update)
            if self.reconcile_sent:
                with self.lock:
                    held, self.held_acks = self.held_acks, []
                for status in held:
                    driver.acknowledgeStatusUpdate(status)
                self.finish(0, "all %d tasks finished; reconciliation answered (%s %s)" % (
                    self.n, task_id, state))
            return
        if state in FAILED_STATES:
            self.ack(driver, update)
            self.finish(1, "task %s: %s %s %s" % (
                task_id, state, update.get("reason", ""), update.get("message", "")))
            return
        if state != "TASK_FINISHED":
            self.ack(driver, update)
            return
        with self.lock:
            first = task_id not in self.finished
            self.finished.add(task_id)
            all_done = len(self.finished) == self.n
            if self.reconcile and "uuid" in update:
                self.held_acks.append(update)
            held = self.reconcile
        if not held:
            self.ack(driver, update)
        if all_done and first:
            if self.reconcile:
                log("all %d tasks finished; reconciling (terminal acks held)" % self.n)
                self.reconcile_sent = True
                driver.reconcileTasks([])
            else:
                self.finish(0, "all %d tasks finished" % self.n)

    def ack(self, driver, status):
        # Updates without uuid come from the master and must not be acked.
        if "uuid" in status:
            driver.acknowledgeStatusUpdate(status)

    def error(self, driver, message):
        self.finish(1, "ERROR event from the master: %s" % message)

    def slaveLost(self, driver, agent_id):
        log("agent %s lost" % agent_id.value)

    def executorLost(self, driver, executor_id, agent_id, status):
        log("executor %s on %s exited (%s)" % (executor_id.value, agent_id.value, status))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n", nargs="?", type=int, default=3, help="number of tasks (default 3)")
    p.add_argument("--master", default=os.environ.get("BERTH_MASTER", "127.0.0.1:5050"),
                   help="HOST:PORT of the master (default $BERTH_MASTER or 127.0.0.1:5050)")
    p.add_argument("--role", help="subscribe to this role (MULTI_ROLE)")
    p.add_argument("--timeout", type=float, default=60.0, help="overall seconds (default 60)")
    p.add_argument("--reconcile", action="store_true",
                   help="after the tasks finish, reconcile and wait for REASON_RECONCILIATION")
    p.add_argument("-v", "--verbose", action="store_true", help="pymesos debug logging")
    a = p.parse_args()
    if a.n < 1:
        p.error("argument n: must be at least 1")
    if a.timeout <= 0:
        p.error("argument --timeout: must be positive")
    # pymesos has its own stderr handler; only its level is ours to choose.
    logging.getLogger("pymesos").setLevel(logging.DEBUG if a.verbose else logging.WARNING)

    framework = {
        "user": getpass.getuser(),
        "name": "berth-pymesos-test",
        "hostname": socket.gethostname(),
        # Removed at once if this process dies without TEARDOWN.
        "failover_timeout": 0,
    }
    if a.role:
        framework["roles"] = [a.role]
        framework["capabilities"] = [{"type": "MULTI_ROLE"}]

    sched = HelloScheduler(a.n, a.reconcile)
    # Explicit acknowledgements: the scheduler decides when (see --reconcile).
    driver = MesosSchedulerDriver(sched, framework, a.master, use_addict=True,
                                  implicit_acknowledgements=False)
    deadline = time.monotonic() + a.timeout
    driver.start()
    try:
        # Short waits: pymesos reports a crash of its IO thread by
        # interrupting the main thread, which needs it to wake up.
        while not sched.done.wait(0.2):
            if time.monotonic() >= deadline:
                sched.finish(3, "timed out after %gs (%d of %d tasks finished)" % (
                    a.timeout, len(sched.finished), a.n))
    except KeyboardInterrupt:
        sched.finish(1, "interrupted (or the pymesos driver failed; see above)")
    except Exception as e:  # the driver thread's exception, re-raised here
        sched.finish(1, "pymesos driver failed: %r" % (e,))
    finally:
        driver.stop()
        driver.join()
    return sched.exit_code


if __name__ == "__main__":
    sys.exit(main())
