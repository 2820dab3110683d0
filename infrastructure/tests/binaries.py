"""What the binaries themselves say they read and write (`describe-deployment`): the
environment variables of their configuration and the CloudWatch metrics they write, so
that the templates are checked against the code instead of a second hand-written list.
`cargo xtask infrastructure test` builds them and names them in ADTRACK_HOST_BIN and
ADTRACK_CONSUMER_BIN."""

import json
import os
import subprocess
from functools import cache


def described(binary_variable: str, *args: str) -> dict:
    binary = os.environ.get(binary_variable)
    assert binary, f"{binary_variable} is not set: run `cargo xtask infrastructure test`"
    result = subprocess.run([binary, *args], capture_output=True, text=True, env={}, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@cache
def host() -> dict:
    """The host's description (`adtrack-host describe-deployment`)."""
    return described("ADTRACK_HOST_BIN", "describe-deployment")


@cache
def consumer() -> dict:
    """The consumer's description (`adtrack-consumer --describe-deployment`)."""
    return described("ADTRACK_CONSUMER_BIN", "--describe-deployment")
