"""Shared fixtures: a local AWS-compatible server (moto) on loopback."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

# Credentials and region for the local server only; nothing here reaches AWS.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """Starts the local AWS server (`moto_server.py`) on 127.0.0.1 and
    yields its URL."""
    port = _free_port()
    # moto's server, with a Kinesis shard split as Kinesis does it.
    server = [sys.executable, os.path.join(os.path.dirname(__file__), "moto_server.py")]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    process = subprocess.Popen([*server, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start on {url}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture()
def aws_env(moto_endpoint):
    """The environment an AWS SDK client needs to talk to the local server."""
    return {**AWS_ENV, "AWS_ENDPOINT_URL": moto_endpoint}


def boto3_client(service, endpoint):
    import boto3
    return boto3.client(service, endpoint_url=endpoint, region_name=AWS_ENV["AWS_REGION"],
                        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
