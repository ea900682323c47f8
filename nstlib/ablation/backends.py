"""Backends: worker processes on this machine, or a Dask cluster."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator

from nstlib.ablation.grid import GridError, run_id
from nstlib.ablation.worker import execute_run, limit_threads, tensorflow_import_silenced


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone (even if it was
    killed with SIGKILL): its task queue would otherwise keep it waiting forever."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _init_local_worker(threads: int) -> None:
    """Worker-process initializer: Ctrl-C and SIGTERM left to the parent (which ends the
    workers itself), thread limits before any TF op, TF's start-up notices silenced."""
    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    # tqdm's default lock holds a named semaphore; a worker ended with SIGKILL could not
    # unlink it, and Python would warn of a leaked semaphore when the runner exits.
    tqdm.set_lock(threading.RLock())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tensorflow_import_silenced():
        limit_threads(threads)


class LocalBackend:
    """Runs on worker processes of this machine (multiprocessing "spawn").

    Each worker imports TensorFlow itself and is limited to ``threads`` intra-op threads,
    so that workers x threads does not exceed the machine's cores. Use it as a context
    manager to reuse the workers (and their imported TensorFlow) for several grids.

    Args:
        workers: Number of processes (default: the available CPUs).
        threads: TF intra-op threads per process (default: CPUs // workers, at least 1).
    """

    def __init__(self, workers: int | None = None, threads: int | None = None):
        cpus = available_cpus()
        self.workers = int(workers or cpus)
        self.threads = int(threads or max(1, cpus // self.workers))
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def description(self) -> str:
        return f"{self.workers} local process(es) x {self.threads} thread(s)"

    @property
    def slots(self) -> int:
        """How many runs execute at once (the runner claims no more than that)."""
        return self.workers

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_local_worker, initargs=(self.threads,))
        return self._executor

    def submit(self, config: dict, out_dir, base_dir) -> concurrent.futures.Future:
        """Send one run to a worker process (starting the workers on first use)."""
        arguments = (execute_run, config, str(out_dir), base_dir, None)
        try:
            return self._pool().submit(*arguments)
        except concurrent.futures.BrokenExecutor:
            # A worker died (e.g. killed for memory): the runs it had are recorded as lost
            # (the runner reads their futures' errors); fresh workers take the rest.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            return self._pool().submit(*arguments)

    def as_completed(self, futures: Iterable) -> Iterator:
        return concurrent.futures.as_completed(list(futures))

    def wait_first(self, futures: Iterable) -> set:
        """Block until at least one future is done; returns the done ones."""
        return concurrent.futures.wait(list(futures),
                                       return_when=concurrent.futures.FIRST_COMPLETED).done

    def cancel(self, futures: Iterable) -> None:
        """Stop at once: drop queued runs and end the worker processes."""
        if self._executor is None:
            return
        # ProcessPoolExecutor has no public way to stop running tasks (3.14 adds
        # terminate_workers); its process table is stable across 3.8-3.13. SIGKILL, as the
        # workers ignore SIGTERM (a signal to the whole process group is the parent's).
        for process in list(getattr(self._executor, "_processes", {}).values()):
            process.kill()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DaskBackend:
    """Runs on a Dask distributed cluster: an existing one, or a ``LocalCluster`` started here.

    Args:
        scheduler: "local-cluster" (start ``LocalCluster(n_workers=workers,
            threads_per_worker=1, processes=True)``), a scheduler address such as
            "tcp://10.0.0.5:8786", or a ``distributed.Client``.
        workers: Worker processes of a local cluster (default: the available CPUs).
        threads: TF intra-op threads per worker process (default for a local cluster:
            CPUs // workers; for an existing cluster: TensorFlow's own choice).

    Results are sent back to this process and written here, so workers of a remote
    cluster need the images (sample names always work) but not the results folder.
    """

    def __init__(self, scheduler="local-cluster", workers: int | None = None,
                 threads: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("the Dask backend needs dask[distributed]: pip install "
                              "'nstlib[dask]'") from None
        self.cluster, self.threads, self._owns_client = None, threads, True
        if isinstance(scheduler, str) and scheduler == "local-cluster":
            import logging

            n = int(workers or available_cpus())
            self.threads = int(threads or max(1, available_cpus() // n))
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        elif isinstance(scheduler, str):
            self.client = Client(scheduler, timeout="10s")
        else:
            self.client, self._owns_client = scheduler, False

    @property
    def description(self) -> str:
        where = "local cluster" if self.cluster is not None else self.client.scheduler.address
        return f"Dask ({where}, {len(self.client.scheduler_info()['workers'])} worker(s))"

    def submit(self, config: dict, out_dir, base_dir):
        return self.client.submit(execute_run, config, None, base_dir, self.threads,
                                  pure=False, key=f"nst-run-{run_id(config)}-{time.time_ns()}")

    @property
    def slots(self) -> int:
        """How many runs execute at once: the cluster's worker threads, now."""
        workers = self.client.scheduler_info()["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers))

    def as_completed(self, futures: Iterable) -> Iterator:
        from distributed import as_completed

        return as_completed(list(futures))

    def wait_first(self, futures: Iterable) -> set:
        """Block until at least one future is done; returns the done ones."""
        from distributed import wait

        return wait(list(futures), return_when="FIRST_COMPLETED").done

    def cancel(self, futures: Iterable) -> None:
        self.client.cancel(list(futures))

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_scheduler(scheduler) -> None:
    """Reject a scheduler argument that is neither None, "local-cluster", an address nor a
    client (before any folder is created or process started)."""
    if isinstance(scheduler, str) and scheduler != "local-cluster" and ":" not in scheduler:
        raise GridError(f"scheduler must be 'local-cluster' or an address like "
                        f"tcp://HOST:PORT, got {scheduler!r}")


def make_backend(workers: int | None = None, scheduler=None, n_runs: int | None = None):
    """The backend for ``run_grid``'s arguments.

    Args:
        workers: Processes (local backend or local cluster); default min(CPUs, runs).
        scheduler: None (local processes), "local-cluster", an address or a Client.
        n_runs: Number of runs to execute (caps the default number of workers).
    """
    if workers is None:
        workers = max(1, min(available_cpus(), n_runs or available_cpus()))
    if scheduler is None:
        return LocalBackend(workers)
    check_scheduler(scheduler)
    return DaskBackend(scheduler, workers)
