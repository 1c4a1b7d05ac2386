"""Arrow record batches between processes through a shared-memory ring, read in place.

A `Subscription` is an Arrow C stream (`__arrow_c_stream__`): pyarrow
(`RecordBatchReader.from_stream`), Polars (`pl.DataFrame(sub)`), DuckDB and
DataFusion read it directly, with arrays pointing into the ring's slots.
Iterating it yields `pyarrow.RecordBatch`es read in place.
"""

from types import TracebackType
from typing import Any, Iterator, Literal, Protocol

import pyarrow

__version__: str

class AlloyError(Exception):
    """An error of the ring or of the Arrow layer (corrupt message, ring full, …)."""

class ProducerGone(AlloyError):
    """The producer died without closing the stream (all it published was delivered)."""

class _ArrowStreamOrArray(Protocol):
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

def remove(name: str) -> None:
    """Removes the named ring from /dev/shm (open mappings stay valid)."""

class Ring:
    """A shared-memory ring of `slot_count` slots of `slot_size` bytes."""

    @staticmethod
    def create(name: str, *, slot_count: int = 64, slot_size: int = 1 << 20, max_subscribers: int | None = None, huge_pages: Literal["off", "prefer", "require"] = "off", prefault: bool = False) -> Ring:
        """Creates the named ring (fails if it exists).

        huge_pages: "require" backs it with huge pages or fails naming what
        to reserve (/proc/sys/vm/nr_hugepages) and mount (the ring directory,
        ALLOY_SHM_DIR, must be a hugetlbfs mount); "prefer" falls back to
        normal pages. prefault populates the page tables at creation."""
    @staticmethod
    def open(name: str) -> Ring:
        """Opens an existing ring (AlloyError if there is none)."""
    @staticmethod
    def open_or_create(name: str, *, slot_count: int = 64, slot_size: int = 1 << 20, max_subscribers: int | None = None, huge_pages: Literal["off", "prefer", "require"] = "off", prefault: bool = False) -> Ring:
        """Opens the named ring, creating it with these sizes (and page
        options, as create) if it does not exist."""
    @staticmethod
    def remove(name: str) -> None:
        """Removes the named ring from /dev/shm."""
    @property
    def name(self) -> str: ...
    @property
    def slot_count(self) -> int: ...
    @property
    def slot_size(self) -> int:
        """Size of one slot in bytes: the largest message."""
    @property
    def published(self) -> int:
        """Messages published so far."""
    @property
    def is_closed(self) -> bool:
        """Whether the current stream was closed by its producer."""
    def mapping_range(self) -> tuple[int, int]:
        """Address range (start, end) of this process's mapping of the ring.
        Before any subscription it is not the range subscriptions read
        through: use Subscription.mapping_range()."""
    def subscribers(self) -> list[dict[str, int]]:
        """The consumer table: index, kind (1 broadcast, 2 queue), group, members,
        claim (next sequence to hand out), release (all below are released)."""
    def subscribe(
        self,
        *,
        queue: int | None = None,
        history: int = 0,
        timeout: float | None = None,
        held_lease_timeout: float | None = 1.0,
        copy: bool = False,
    ) -> Subscription:
        """Joins now: a broadcast subscriber, or with `queue` a member of that
        work-queue group (>= 1). `timeout` (seconds) bounds each wait for the
        schema or a batch (None: for ever); `held_lease_timeout` how long the
        ring may stay stalled by batches this subscriber holds. `copy` copies
        each batch out of its slot (for engines that keep the data, over a
        stream longer than the ring)."""
    def publisher(self, *, mode: str = "ipc", timeout: float | None = None, new_stream: bool = False) -> Publisher:
        """Attaches the ring's one producer. `mode`: "ipc" or "cdata"
        (C-Data-offsets); `timeout`: longest wait for a free slot."""

class Subscription:
    """A joined consumer. Iterate it (or `recv`) for pyarrow RecordBatches
    whose buffers lie in the ring's mapping; a batch holds its slot until it
    and every array taken from it are dropped. Also an Arrow C stream (once:
    the stream takes the subscription over). Waits release the GIL and end
    on Ctrl-C (KeyboardInterrupt)."""

    def recv(self, timeout: float | None = None) -> pyarrow.RecordBatch | None:
        """The next batch, read in place; None at the end of the stream.
        TimeoutError after `timeout` (default: the subscription's);
        ProducerGone when the producer died."""
    def __iter__(self) -> Iterator[pyarrow.RecordBatch]: ...
    def __next__(self) -> pyarrow.RecordBatch: ...
    def __arrow_c_schema__(self) -> object:
        """The stream's schema (waits for it) as an `arrow_schema` capsule."""
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """The subscription as an `arrow_array_stream` capsule, arrays in
        place (`requested_schema` is ignored)."""
    def leases_held(self) -> int:
        """Batches (and arrays taken from them) not dropped yet."""
    def mapping_range(self) -> tuple[int, int]:
        """Address range (start, end) of the ring's mapping."""
    @property
    def bytes_received(self) -> int: ...
    def close(self) -> None:
        """Leaves the ring (held batches keep their slots until dropped)."""
    def __enter__(self) -> Subscription: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

class Publisher:
    """The ring's producer; the first batch fixes the stream's schema."""

    def write(self, data: Any) -> int:
        """Writes an object with `__arrow_c_stream__` (Table, RecordBatchReader,
        Polars DataFrame, …) batch by batch, or with `__arrow_c_array__`
        (RecordBatch) as one batch; returns the number of batches written.
        Releases the GIL while writing; a wait on a full ring ends on Ctrl-C
        (KeyboardInterrupt)."""
    def close(self) -> None:
        """Ends the stream; readers see its end after the last batch."""
    def __enter__(self) -> Publisher: ...
    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...
