#!/usr/bin/env python3
"""A real pymesos framework using dynamic reservations and a persistent
volume, the way Mesos frameworks (e.g. Marathon's resident tasks) do:

1. on the first usable offer, one ACCEPT with RESERVE (cpus, mem, disk for
   its role), CREATE (a volume in the reserved disk) and LAUNCH of a writer
   task that writes a line into the volume;
2. when the writer finished, on an offer holding the volume, LAUNCH a reader
   task that prints the line back (its stdout is in its sandbox);
3. when the reader finished, DESTROY the volume and UNRESERVE everything.

Every status update is printed as one JSON line on stdout; the last line is
{"done": true, "offered_back_unreserved": true|false}. Exit 0 on success,
1 on a failed task or an ERROR, 2 for bad arguments, 3 on the timeout.

    target/py/bin/python tests/py/pymesos_volumes.py --master HOST:PORT [--role R]
"""

import argparse
import getpass
import json
import logging
import os
import sys
import threading
import time
import uuid

try:
    from pymesos import MesosSchedulerDriver, Scheduler
except ImportError:
    sys.exit("pymesos is not installed: run tests/py/setup-pymesos.sh and use target/py/bin/python")

DISK = 32.0
CPUS = 0.5
MEM = 64.0
FAILED = {"TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_KILLED", "TASK_DROPPED", "TASK_GONE"}


def log(msg):
    print("pymesos_volumes: " + msg, file=sys.stderr, flush=True)


def scalar(r):
    return float(r.get("scalar", {}).get("value", 0.0)) if r.get("type") == "SCALAR" else 0.0


class VolumeScheduler(Scheduler):
    def __init__(self, role, principal):
        self.role = role
        self.principal = principal
        self.run_id = uuid.uuid4().hex[:8]
        self.persistence_id = "pv-" + self.run_id
        self.phase = "reserve"   # reserve -> writing -> read -> reading -> destroy -> check -> done
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.exit_code = None

    def finish(self, code, why):
        with self.lock:
            if self.exit_code is None:
                self.exit_code = code
                log(why)
        self.done.set()

    def reservation(self):
        return [{"type": "DYNAMIC", "role": self.role, "principal": self.principal}]

    def reserved(self, name, amount):
        return {"name": name, "type": "SCALAR", "scalar": {"value": amount},
                "reservations": self.reservation()}

    def volume(self):
        v = self.reserved("disk", DISK)
        v["disk"] = {"persistence": {"id": self.persistence_id, "principal": self.principal},
                     "volume": {"container_path": "data", "mode": "RW"}}
        return v

    def task(self, offer, name, cmd):
        return {
            "task_id": {"value": "%s-%s" % (name, self.run_id)},
            "agent_id": {"value": offer.agent_id.value},
            "name": name,
            "resources": [self.reserved("cpus", CPUS), self.reserved("mem", MEM), self.volume()],
            "command": {"value": cmd, "shell": True},
        }

    def has(self, offer, pred):
        return any(pred(r) for r in offer.get("resources", []))

    def mine(self, r):
        res = r.get("reservations") or []
        return bool(res) and res[-1].get("role") == self.role

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                phase = self.phase
            ops = None
            unreserved = lambda name, amount: self.has(
                offer, lambda r: r.get("name") == name and not r.get("reservations")
                and "disk" not in r and scalar(r) >= amount)
            if phase == "reserve" and unreserved("cpus", CPUS) and unreserved("mem", MEM) \
                    and unreserved("disk", DISK):
                ops = [
                    {"type": "RESERVE", "reserve": {"resources": [
                        self.reserved("cpus", CPUS), self.reserved("mem", MEM),
                        self.reserved("disk", DISK)]}},
                    {"type": "CREATE", "create": {"volumes": [self.volume()]}},
                    {"type": "LAUNCH", "launch": {"task_infos": [self.task(
                        offer, "writer", "echo written-by-pymesos > data/file")]}},
                ]
                next_phase = "writing"
            elif phase == "read" and self.has(offer, lambda r: r.get("disk", {}).get(
                    "persistence", {}).get("id") == self.persistence_id):
                ops = [{"type": "LAUNCH", "launch": {"task_infos": [self.task(
                    offer, "reader", "cat data/file")]}}]
                next_phase = "reading"
            elif phase == "destroy" and self.has(offer, lambda r: r.get("disk", {}).get(
                    "persistence", {}).get("id") == self.persistence_id) \
                    and self.has(offer, lambda r: r.get("name") == "cpus" and self.mine(r)):
                ops = [
                    {"type": "DESTROY", "destroy": {"volumes": [self.volume()]}},
                    {"type": "UNRESERVE", "unreserve": {"resources": [
                        self.reserved("cpus", CPUS), self.reserved("mem", MEM),
                        self.reserved("disk", DISK)]}},
                ]
                next_phase = "check"
            elif phase == "check" and not self.has(offer, self.mine):
                print(json.dumps({"done": True, "offered_back_unreserved": True}), flush=True)
                driver.declineOffer(offer.id, {"refuse_seconds": 0})
                self.finish(0, "reserved, created, wrote, read back, destroyed, unreserved")
                continue
            if ops is None:
                driver.declineOffer(offer.id, {"refuse_seconds": 0.2})
                continue
            log("phase %s: %s on offer %s" % (phase, [o["type"] for o in ops], offer.id.value))
            with self.lock:
                self.phase = next_phase
            driver.acceptOffers([offer.id], ops, {"refuse_seconds": 0})

    def statusUpdate(self, driver, update):
        print(json.dumps(update, sort_keys=True), flush=True)
        if "uuid" in update:
            driver.acknowledgeStatusUpdate(update)
        state = update.state
        name = update.task_id.value.split("-")[0]
        if state in FAILED:
            self.finish(1, "task %s: %s %s" % (update.task_id.value, state, update.get("message", "")))
        elif state == "TASK_FINISHED":
            with self.lock:
                if name == "writer" and self.phase == "writing":
                    self.phase = "read"
                elif name == "reader" and self.phase == "reading":
                    self.phase = "destroy"
            driver.reviveOffers()

    def error(self, driver, message):
        self.finish(1, "ERROR event: %s" % message)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--master", default=os.environ.get("BERTH_MASTER", "127.0.0.1:5050"))
    p.add_argument("--role", default="pymesos-volumes")
    p.add_argument("--principal", default="pymesos")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    if a.timeout <= 0:
        p.error("argument --timeout: must be positive")
    logging.getLogger("pymesos").setLevel(logging.DEBUG if a.verbose else logging.WARNING)
    framework = {
        "user": getpass.getuser(), "name": "berth-pymesos-volumes", "failover_timeout": 0,
        "roles": [a.role], "principal": a.principal,
        "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}],
    }
    sched = VolumeScheduler(a.role, a.principal)
    driver = MesosSchedulerDriver(sched, framework, a.master, use_addict=True,
                                  implicit_acknowledgements=False)
    deadline = time.monotonic() + a.timeout
    driver.start()
    try:
        while not sched.done.wait(0.2):
            if time.monotonic() >= deadline:
                sched.finish(3, "timed out in phase %s" % sched.phase)
    except KeyboardInterrupt:
        sched.finish(1, "interrupted (or the pymesos driver failed; see above)")
    except Exception as e:
        sched.finish(1, "pymesos driver failed: %r" % (e,))
    finally:
        driver.stop()
        driver.join()
    return sched.exit_code


if __name__ == "__main__":
    sys.exit(main())
