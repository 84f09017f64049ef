"""Runs net-queue 2.x's iops.py, unchanged, on net-queue 1.1.x.

net-queue 2.1.0 to 2.6.4 cannot open gRPC (their package ships the module
as net_queue/gprc), and 1.1.x, whose gRPC works, ships no iops.py.  iops.py
uses two option names that changed between them; this maps them onto
1.1.x's and runs the script:

    python netqueue_iops_compat.py PATH/TO/iops.py ARGS...

- ConnectionOptions(transport_size=N) is 1.1.x's protocol_size;
- SecurityOptions(cert=F) is 1.1.x's certificate.
Everything else (the workload, the barrier, the timing, pickled numpy
slices as messages) is iops.py's own.
"""
import dataclasses
import runpy
import sys

import net_queue as nq

_Connection = nq.ConnectionOptions
_Communicator = nq.CommunicatorOptions
_Security = nq.SecurityOptions


@dataclasses.dataclass(frozen=True)
class ConnectionOptions(_Connection):
    """2.x's ConnectionOptions: transport_size is 1.1.x's protocol_size."""

    transport_size: int = _Connection().protocol_size

    def __post_init__(self):
        object.__setattr__(self, "protocol_size", self.transport_size)


def CommunicatorOptions(**kwargs):  # noqa: N802 - stands in for the class
    kwargs.setdefault("connection", ConnectionOptions())
    return _Communicator(**kwargs)


def SecurityOptions(key=None, cert=None):  # noqa: N802 - stands in for the class
    return _Security(key=key, certificate=cert)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: netqueue_iops_compat.py IOPS_PY [ARGS...]")
    nq.ConnectionOptions = ConnectionOptions
    nq.CommunicatorOptions = CommunicatorOptions
    nq.SecurityOptions = SecurityOptions
    script = sys.argv.pop(1)
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
