"""Queries to the scene model, independent of ROS.

The node converts a ``video3d_interfaces/srv/Query`` request into a
:class:`QueryRequest`, hands it to a :class:`QueryWorker` (one worker thread:
the GPU runs one query at a time) and converts the :class:`QueryResult` back.
Task and status codes are the service's constants, as enums.
"""

from __future__ import annotations

import concurrent.futures
import enum
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .geometry import Box3D


class QueryTask(enum.IntEnum):
    """What the query asks for; values are ``Query.Request.TASK_*``."""

    AUTO = 0
    QUESTION = 1
    GROUND = 2
    GROUND_MULTI = 3
    CAPTION = 4

    @classmethod
    def parse(cls, name: str) -> "QueryTask":
        """'auto' | 'question' | 'ground' | 'ground_multi' | 'caption' (also with '-')."""
        key = name.strip().lower().replace("-", "_")
        try:
            return cls[key.upper()]
        except KeyError:
            valid = ", ".join(t.name.lower() for t in cls)
            raise ValueError(f"unknown task {name!r}; expected one of: {valid}") from None


class QueryStatus(enum.IntEnum):
    """Outcome of a query; values are ``Query.Response.STATUS_*``."""

    OK = 0
    BUSY = 1
    NO_DATA = 2
    TF_ERROR = 3
    TIMEOUT = 4
    MODEL_ERROR = 5
    INVALID = 6


@dataclass(frozen=True)
class QueryRequest:
    """A query in the node's world frame.

    Attributes:
        task: requested task; AUTO is resolved by :func:`resolve_task`.
        text: the question / referring expression (may be empty for captions).
        target: caption target in the world frame (a box, or a point when its
            size is zero); None when the request has none.
        max_keyframes: use at most this many keyframes (0 = all).
    """

    task: QueryTask
    text: str
    target: Box3D | None = None
    max_keyframes: int = 0


@dataclass(frozen=True)
class GroundedObject:
    """One object of a result, in the world frame."""

    proposal_id: int
    score: float
    box: Box3D
    label: str = ""


@dataclass(frozen=True)
class QueryResult:
    status: QueryStatus
    message: str = ""
    answer: str = ""
    objects: tuple[GroundedObject, ...] = ()
    keyframe_stamps_s: tuple[float, ...] = ()
    inference_time_s: float = 0.0
    task: QueryTask = QueryTask.AUTO
    keyframe_groups: int = 1  # the keyframes were read as this many interleaved groups

    @property
    def success(self) -> bool:
        return self.status is QueryStatus.OK


# Words that open a question in the benchmarks' data (ScanQA, SQA3D).
_QUESTION_OPENERS = re.compile(
    r"^\s*(what|which|where|who|whose|how|is|are|was|were|can|could|do|does|did|"
    r"should|would|will|am|if|i\b|describe|tell|count)\b",
    re.IGNORECASE,
)


def resolve_task(task: QueryTask, text: str, has_target: bool) -> QueryTask:
    """Resolve AUTO: a target means a caption; a question means QA; else grounding.

    A text is a question when it ends with '?' or opens with an interrogative
    (or a situated description "I am ...", as in SQA3D); anything else is a
    referring expression ("the lamp left of the bed").
    """
    if task is not QueryTask.AUTO:
        return task
    if has_target:
        return QueryTask.CAPTION
    if text.rstrip().endswith("?") or _QUESTION_OPENERS.match(text):
        return QueryTask.QUESTION
    return QueryTask.GROUND


def validate_request(request: QueryRequest, max_text_chars: int) -> str | None:
    """Return why the request is malformed, or None when it is fine."""
    if len(request.text) > max_text_chars:
        return (f"text is {len(request.text)} characters; the limit is {max_text_chars} "
                "(parameter max_text_chars)")
    if request.task is QueryTask.CAPTION:
        if request.target is None:
            return "task caption needs a target box or point (has_target=true)"
    elif not request.text.strip():
        return f"task {request.task.name.lower()} needs a non-empty text"
    if request.max_keyframes < 0:
        return f"max_keyframes must be >= 0, got {request.max_keyframes}"
    return None


def _job_result(future: concurrent.futures.Future, start_s: float) -> QueryResult:
    """A finished job's answer; the model's exception and a cancellation become results."""
    if future.cancelled():
        return QueryResult(QueryStatus.NO_DATA, message="cancelled: the node is shutting down")
    exc = future.exception()
    if exc is not None:  # the worker reports the model's own error type and text
        return QueryResult(QueryStatus.MODEL_ERROR, message=f"{type(exc).__name__}: {exc}",
                           inference_time_s=time.perf_counter() - start_s)
    return future.result()


class Busy(RuntimeError):
    """Raised by :meth:`QueryWorker.submit` when ``max_pending`` queries are waiting."""


@dataclass
class _Job:
    fn: Callable[[], QueryResult]
    is_query: bool = True  # counts against max_pending while it waits
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class QueryWorker:
    """One worker thread that runs queries in order; at most ``max_pending`` wait.

    ``submit`` never blocks: when the queue is full it raises :class:`Busy` at
    once, so a service callback can answer BUSY immediately. A query that runs
    past its timeout is reported as TIMEOUT to its caller; the worker finishes
    it in the background (a running model call cannot be interrupted safely)
    and then takes the next one.
    """

    def __init__(self, max_pending: int, name: str = "video3d-query") -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0  # queries queued, not yet running (at most max_pending)
        self._unfinished = 0  # jobs of any kind submitted and not yet finished
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], QueryResult]) -> concurrent.futures.Future:
        job = _Job(fn)
        with self._lock:
            if self._waiting >= self.max_pending:
                raise Busy(f"{self.max_pending} queries already pending")
            self._waiting += 1
            self._unfinished += 1
            self._jobs.put_nowait(job)
        return job.future

    def submit_when_idle(self, fn: Callable[[], object]) -> concurrent.futures.Future | None:
        """Queue background work (the node's preparation of new keyframes) only while no job
        waits or runs; None otherwise. It never makes a query BUSY (it does not count against
        ``max_pending``); a query submitted meanwhile runs after it."""
        job = _Job(fn, is_query=False)
        with self._lock:
            if self._unfinished:
                return None
            self._unfinished += 1
            self._jobs.put_nowait(job)
        return job.future

    def run(self, fn: Callable[[], QueryResult], timeout_s: float) -> QueryResult:
        """Submit and wait; BUSY / TIMEOUT / MODEL_ERROR become results, not exceptions."""
        box: list[QueryResult] = []
        delivered = threading.Event()
        self.run_async(fn, timeout_s, lambda r: (box.append(r), delivered.set()))
        delivered.wait()
        return box[0]

    def run_async(self, fn: Callable[[], QueryResult], timeout_s: float,
                  deliver: Callable[[QueryResult], None]) -> None:
        """Submit without waiting: ``deliver`` is called exactly once with the answer, or with
        BUSY (at once, in this thread), TIMEOUT (after ``timeout_s``, from a timer thread),
        MODEL_ERROR (the model's exception) or NO_DATA (cancelled by :meth:`close`).

        For callers that must not block, such as the node's service callback: it awaits the
        delivery, so one executor thread keeps serving the camera streams meanwhile."""
        start = time.perf_counter()
        try:
            future = self.submit(fn)
        except Busy as exc:
            deliver(QueryResult(QueryStatus.BUSY, message=f"{exc}; retry later"))
            return
        lock = threading.Lock()
        pending = True

        def finish(result: QueryResult) -> None:
            nonlocal pending
            with lock:
                if not pending:
                    return
                pending = False
            timer.cancel()
            deliver(result)

        timer = threading.Timer(timeout_s, lambda: finish(QueryResult(
            QueryStatus.TIMEOUT, message=f"no answer within {timeout_s:.1f} s (parameter query_timeout_s)",
            inference_time_s=time.perf_counter() - start)))
        timer.daemon = True
        timer.start()
        future.add_done_callback(lambda f: finish(_job_result(f, start)))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.is_query:
                with self._lock:
                    self._waiting -= 1
            try:
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    job.future.set_result(job.fn())
                except BaseException as exc:  # delivered to the waiting caller
                    job.future.set_exception(exc)
            finally:
                with self._lock:
                    self._unfinished -= 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the running query; pending ones are cancelled."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.cancel()
        self._jobs.put(None)
        self._thread.join(timeout=timeout_s)
