"""Start-up decisions of `flowergan.distributed` (nothing is started here but one subprocess)."""

import os
import socket
import subprocess
import sys
import time

import pytest

from flowergan import distributed
from tests import tiny_config

CLUSTER_VARIABLES = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "OMPI_MCA_orte_hnp_uri",
    "SLURM_JOB_ID",
    "KUBERNETES_SERVICE_HOST",
    "TPU_WORKER_HOSTNAMES",
)
SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "node[001-002]",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
}


@pytest.fixture(autouse=True)
def plain_machine(monkeypatch):
  """No cluster variables, and any network use fails the test."""
  for name in CLUSTER_VARIABLES:
    monkeypatch.delenv(name, raising=False)

  def no_network(*args, **kwargs):
    raise AssertionError("cluster detection tried to use the network")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  monkeypatch.setattr(socket, "gethostbyname", no_network)


def test_plain_machine_is_a_single_process_without_network():
  assert distributed.resolve().single_process
  assert distributed.resolve(cluster_detection="off").single_process


def test_explicit_flags_and_environment():
  setup = distributed.resolve("localhost:1234", 2, 1)
  assert (setup.coordinator_address, setup.num_processes, setup.process_id) == (
      "localhost:1234",
      2,
      1,
  )
  env = {"JAX_COORDINATOR_ADDRESS": "h0:99", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert distributed.explicit_setup(env=env) == distributed.Setup("h0:99", 4, 3)
  assert distributed.resolve("localhost:1234", 1, 0).single_process  # one process: no service


@pytest.mark.parametrize(
    "args,message",
    [
        (dict(num_processes=2, process_id=0), "need --coordinator_address"),
        (dict(coordinator_address="localhost", num_processes=2, process_id=0), "host:port"),
        (dict(coordinator_address="h:1", num_processes=2, process_id=2), r"in \[0, 2\)"),
        (dict(coordinator_address="h:1", num_processes=0, process_id=0), ">= 1"),
        (dict(coordinator_address="h:1"), "no process count and id"),
        (dict(cluster_detection="carrier-pigeon"), "unknown --cluster_detection"),
    ],
)
def test_bad_settings_are_one_line_errors(args, message):
  with pytest.raises(distributed.DistributedError, match=message) as e:
    distributed.resolve(**args)
  assert "\n" not in str(e.value)


def test_non_integer_environment_is_an_error(monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(distributed.DistributedError, match="must be an integer"):
    distributed.resolve("h:1")


def test_slurm_is_detected_by_jax(monkeypatch):
  for name, value in SLURM.items():
    monkeypatch.setenv(name, value)
  setup = distributed.resolve()
  assert setup.cluster == "slurm" and not setup.single_process
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert distributed.resolve().single_process  # a one-task job needs no coordinator


def test_open_mpi_is_detected_by_jax(monkeypatch):
  monkeypatch.setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://10.96.0.1:34911")
  monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
  monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
  monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
  assert distributed.resolve().cluster == "ompi"
  assert distributed.resolve(cluster_detection="off").single_process


def _train(args, env=None, prefix=()):
  return subprocess.run(
      [*prefix, sys.executable, str(tiny_config.REPO / "train.py"), *args],
      cwd=tiny_config.REPO,
      env=dict(os.environ, PYTHONPATH=str(tiny_config.REPO), **(env or {})),
      capture_output=True,
      text=True,
      timeout=300,
  )


def test_train_cli_bad_process_id_is_one_line(tmp_path):
  result = _train(
      ["--coordinator_address=localhost:1", "--num_processes=2", "--process_id=5"]
      + [f"--workdir={tmp_path / 'run'}"]
  )
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: --process_id must be in")
  assert not (tmp_path / "run").exists()


def test_single_process_starts_at_once_without_network(tmp_path):
  """A plain machine under `unshare -n` (no network at all): no coordinator, no wait."""
  if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode:
    pytest.skip("needs `unshare -n` (root, Linux)")
  code = (
      "import time; t = time.monotonic(); from flowergan import distributed; "
      "s = distributed.initialize(); print(s.single_process, distributed.describe(), "
      "round(time.monotonic() - t, 1))"
  )
  start = time.monotonic()
  result = subprocess.run(
      ["unshare", "-n", sys.executable, "-c", code],
      env=dict(os.environ, PYTHONPATH=str(tiny_config.REPO), JAX_PLATFORMS="cpu"),
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith("True process 0 of 1: "), result.stdout
  assert time.monotonic() - start < 60
