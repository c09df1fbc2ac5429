"""Host ↔ GPU copies on side streams, so a pipelined device never waits for the host.

A plain ``tensor.to("cuda")`` from pageable memory, or ``.cpu()`` of a result, synchronises with
the compute stream: the host then waits for all work queued so far (including the next chunk's),
and the GPU idles while the host prepares what comes after. Here uploads go through pinned memory
on an upload stream (the compute stream waits only for that copy), and downloads start on a
download stream as soon as the compute stream has produced the tensors, finishing into pinned
host memory; :meth:`Pending.result` waits for those copies alone. On a CPU device both are plain.
"""

from __future__ import annotations

import torch


class Pending:
    """Host tensors whose device→host copies may still be running."""

    def __init__(self, tensors: list[torch.Tensor], done: "torch.cuda.Event | None") -> None:
        self._tensors, self._done = tensors, done

    def result(self) -> list[torch.Tensor]:
        """The host tensors, once copied (ordinary memory: the pinned staging buffers go back to
        PyTorch's pinned-memory cache for the next chunk)."""
        if self._done is not None:
            self._done.synchronize()
            self._done = None
            self._tensors = [t.clone() for t in self._tensors]
        return self._tensors


class HostTransfers:
    """Uploads and downloads for one device (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.upload_stream = torch.cuda.Stream(device)
            self.download_stream = torch.cuda.Stream(device)

    def upload(self, host: torch.Tensor) -> torch.Tensor:
        """A host tensor → the same values on the device, ready for the current stream."""
        if not self.cuda or host.device.type == "cuda":
            return host.to(self.device)
        pinned = host if host.is_pinned() else host.pin_memory()
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.upload_stream):
            out = pinned.to(self.device, non_blocking=True)
        compute.wait_stream(self.upload_stream)
        out.record_stream(compute)
        return out

    def download(self, tensors: list[torch.Tensor]) -> Pending:
        """Start copying device tensors (as produced by the work queued so far) to the host."""
        if not self.cuda:
            return Pending([t.cpu() for t in tensors], None)
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(self.device))
        hosts = []
        with torch.cuda.stream(self.download_stream):
            self.download_stream.wait_event(ready)
            for tensor in tensors:
                host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                host.copy_(tensor, non_blocking=True)
                tensor.record_stream(self.download_stream)
                hosts.append(host)
            done = torch.cuda.Event()
            done.record(self.download_stream)
        return Pending(hosts, done)
