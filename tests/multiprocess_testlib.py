"""Runs a test script as N JAX processes on loopback next to an in-process reference run."""
import os
import socket
import subprocess
import sys


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_processes(script, args, tmp_path, reference, num_processes=2, local_devices=4, timeout=300):
  """Starts `script --process_id=i --num_processes=N --port=P --local_devices=D *args` for each i, runs
  `reference()` in this process meanwhile, waits, and asserts every process exited 0 (with the logs' tails
  in the message). Returns what `reference()` returned."""
  port = free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  procs, logs = [], []
  for i in range(num_processes):
    logs.append(open(tmp_path / f"process{i}.log", "w"))
    procs.append(subprocess.Popen(
        [sys.executable, str(script), f"--process_id={i}", f"--num_processes={num_processes}", f"--port={port}",
         f"--local_devices={local_devices}", *args], stdout=logs[-1], stderr=subprocess.STDOUT, env=env))
  try:
    result = reference()
    codes = [p.wait(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      f.close()
  tails = "\n".join(f"--- process {i}:\n" + (tmp_path / f"process{i}.log").read_text()[-3000:]
                    for i in range(num_processes))
  assert codes == [0] * num_processes, tails
  return result
