"""Running the encoder on batches of windows with several batches in flight; results come back in order.

- **CPU: one batch per core.** ``workers`` threads each run whole batches with one torch thread, instead of
  every matrix product being split over the cores (torch's default). A batch is then one core's work from start
  to end, with no barrier where the cores wait for each other after each of the ~60 operations of a forward
  pass: a core taken by another process, or by the reader, delays only its own batch, and small operations
  (layer norms, additions) cost no synchronisation. The caller's thread reads and places windows meanwhile.
- **GPU:** the result's copy back to the host does not block; it is collected once the next batch is queued.

Results do not depend on the number of workers: each batch is computed whole by one thread.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np
import torch


def cpu_workers(device: torch.device) -> int:
    """Batches computed at once: torch's thread count on a CPU (the cores it may use), 1 on a GPU."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


class BatchRunner:
    """Runs ``forward(batch) -> (B, ...) tensor`` on batches and yields ``(batch, result as numpy)`` in order.

    Args:
        forward: the model call on one batch's input; runs under ``torch.inference_mode`` in a worker thread
            (CPU) or in the caller's thread (GPU).
        device: where ``forward`` computes.
        workers: CPU threads (one batch each); see :func:`cpu_workers`.

    ``submit(batch, x)`` queues a batch (``x`` None: nothing to compute, the batch only carries bookkeeping) and
    yields the batches that are finished, oldest first; :meth:`drain` yields the rest. Use as a context manager.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device, workers: int = 1):
        self.forward, self.device = forward, device
        self.workers = workers if device.type == "cpu" else 1
        self._threads = torch.get_num_threads()
        self._pool = (ThreadPoolExecutor(self.workers, thread_name_prefix="softcon-model",
                                         initializer=torch.set_num_threads, initargs=(1,))
                      if self.workers > 1 else None)
        self._queue: deque[tuple[Any, Callable[[], np.ndarray | None]]] = deque()

    @property
    def depth(self) -> int:
        """Batches held back after submission: a queued batch per worker beside the one it computes (CPU
        threads), the one whose copy is still on its way (GPU), or none."""
        if self._pool is not None:
            return 2 * self.workers
        return 1 if self.device.type == "cuda" else 0

    def _cpu(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.forward(x).float().numpy()

    def submit(self, batch: Any, x: torch.Tensor | None) -> Iterator[tuple[Any, np.ndarray | None]]:
        if x is None:
            self._queue.append((batch, lambda: None))
        elif self._pool is not None:
            future: Future = self._pool.submit(self._cpu, x)
            self._queue.append((batch, future.result))
        elif self.device.type == "cuda":  # copy back without waiting; collect after the next batch is queued
            with torch.inference_mode():
                out = self.forward(x).float().to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._queue.append((batch, lambda: (event.synchronize(), out.numpy())[1]))
        else:
            out = self._cpu(x)
            self._queue.append((batch, lambda: out))
        while len(self._queue) > self.depth:
            yield self._pop()

    def _pop(self) -> tuple[Any, np.ndarray | None]:
        batch, collect = self._queue.popleft()
        return batch, collect()

    def drain(self) -> Iterator[tuple[Any, np.ndarray | None]]:
        while self._queue:
            yield self._pop()

    def close(self) -> None:
        """Stop the workers (after the batch each is computing) and restore torch's thread count."""
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        torch.set_num_threads(self._threads)

    def __enter__(self) -> "BatchRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
