"""The OpenAI-compatible teacher: synthetic queries from any chat-completions endpoint.

Works with OpenAI and with anything that speaks its chat API (vLLM, Ollama, LiteLLM,
Azure-style gateways, ...). Requests run concurrently (bounded by ``concurrency``),
each with its own timeout; 429/5xx/timeouts/connection errors are retried with
exponential backoff and jitter (``Retry-After`` honoured), at most ``max_retries``
times per chunk. A chunk that still fails is counted in ``stats.failed_chunks`` and
is retried on the next run, because only successful replies are cached.

Replies are cached on disk per (chunk text, model, prompt, n), so a killed run
resumes where it stopped and a re-run of an unchanged corpus makes no requests.
Budgets (chunks sent, tokens, dollars) stop new requests once reached; requests
already in flight finish, so a cap can be overshot by at most ``concurrency``
requests. Budgets span every ``generate()`` call of one generator instance (a
cycle's train and eval calls together); cached chunks cost nothing.

The API key is never logged: every message built from an error is redacted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai
from pydantic import SecretStr

from vectune.config.settings import OpenAITeacher
from vectune.core.chunks import Chunk, text_hash
from vectune.errors import BadInput
from vectune.observe.progress import Progress
from vectune.pipeline.pairs.teachers.base import GenerationResult, GenerationStats, Query, QueryGenerator
from vectune.pipeline.pairs.teachers.cache import CacheEntry, ReplyCache, cache_key
from vectune.pipeline.pairs.teachers.parse import parse_questions
from vectune.pipeline.pairs.teachers.prompt import Prompt

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 425, 429})
_FATAL_ERRORS = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
#: longest wait honoured from a Retry-After header
MAX_RETRY_AFTER_S = 120.0
#: chars per token, to estimate usage when an endpoint reports none
CHARS_PER_TOKEN = 4


class _Fatal(Exception):
    """The endpoint refuses every request (bad key, no such model): stop the run."""


class OpenAIGenerator(QueryGenerator):
    """Query generator backed by an OpenAI-compatible chat endpoint.

    Args:
        config: the ``OpenAITeacher`` settings.
        cache_dir: folder for the reply cache (``teacher-cache.jsonl``); ``None``
            disables caching.
        backoff_base_s: first retry waits up to this long (full jitter, doubling).
        backoff_max_s: ceiling of one computed backoff.
        abort_after_failures: stop the run (raise :class:`BadInput`) after this many
            chunks fail in a row with nothing succeeding in between; default
            ``max(10, 2 * concurrency)``. Protects against hours of retries against a
            dead endpoint. ``0`` disables.
        fsync: fsync each cache line (keep on outside tests).

    Raises:
        BadInput: the prompt file is unusable, or no API key is available for the
            public OpenAI endpoint.
    """

    synthetic = True

    def __init__(
        self,
        config: OpenAITeacher,
        cache_dir: Path | str | None,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        abort_after_failures: int | None = None,
        fsync: bool = True,
    ):
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.prompt = Prompt.load(config.prompt_file, config.domain_hint)
        self.name = f"openai:{config.model}"
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.abort_after_failures = (
            max(10, 2 * config.concurrency) if abort_after_failures is None else abort_after_failures
        )
        self.fsync = fsync
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        if not key and not config.base_url:
            raise BadInput(
                "the openai teacher needs an API key: set OPENAI_API_KEY "
                "(or OPENAI_BASE_URL for a local endpoint that needs none)"
            )
        # Local servers (vLLM, Ollama) accept any key; the client insists on one.
        self._api_key = SecretStr(key or "unused")
        if config.max_cost_usd and not (config.usd_per_1k_prompt_tokens or config.usd_per_1k_completion_tokens):
            logger.warning(
                "teacher: max_cost_usd is set but both per-1k token prices are 0, so the cost cap "
                "can never be reached; set usd_per_1k_prompt_tokens/usd_per_1k_completion_tokens"
            )
        #: extra facts about the last generate() call, for the run report
        self.last_info: dict[str, Any] = {}
        self.reset_budget()
        self._reset_run_state()

    # ------------------------------------------------------------------ public
    def fingerprint(self) -> str:
        """Model and prompt hash: changes whenever the queries would."""
        return f"{self.name}:{self.prompt.hash}"

    def generate(self, chunks: Sequence[Chunk], n: int) -> GenerationResult:
        """Generate up to ``n`` questions per chunk (sync; runs its own event loop).

        Args:
            chunks: the chunks to write queries for.
            n: questions wanted per chunk.

        Returns:
            Queries in chunk order and the run's stats. Extra facts (retries, error
            kinds, JSON-mode fallback, budget skips) are in :attr:`last_info`.

        Raises:
            BadInput: the endpoint rejects the key or model (401/403/404), or every
                chunk keeps failing (see ``abort_after_failures``). Replies received
                before that are cached.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate(list(chunks), n))
        # Called from inside a running loop (a notebook, an async app): use a thread.
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, self._generate(list(chunks), n)).result()

    def reset_budget(self) -> None:
        """Forget what earlier :meth:`generate` calls spent.

        Budgets (``max_chunks``, ``max_tokens_total``, ``max_cost_usd``) cap the whole
        life of this generator — e.g. a cycle's train *and* eval calls together — not
        each call. Call this to start a new budget with the same instance.
        """
        self.spent_chunks = 0
        self.spent_tokens = 0
        self.spent_cost_usd = 0.0

    # ----------------------------------------------------------------- internals
    def _reset_run_state(self) -> None:
        self._json_mode = self.config.json_mode
        self._json_fallback = False
        self._stop = False
        self._fatal: str | None = None
        self._retries = 0
        self._errors: Counter = Counter()
        self._skipped_budget = 0
        self._consecutive_failures = 0
        self._usage_missing_logged = False

    def _redact(self, text: str) -> str:
        secret = self._api_key.get_secret_value()
        if secret and secret != "unused":
            text = text.replace(secret, "***")
        return text

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens / 1000.0 * self.config.usd_per_1k_prompt_tokens
            + completion_tokens / 1000.0 * self.config.usd_per_1k_completion_tokens
        )

    def _budget_reason(self, stats: GenerationStats) -> str | None:
        """Why no new request may start (counting earlier calls' spending), or None."""
        c = self.config
        sent = self.spent_chunks + stats.chunks_sent
        if c.max_chunks is not None and sent >= c.max_chunks:
            return f"chunk cap {c.max_chunks} reached after {sent} chunks"
        tokens = self.spent_tokens + stats.prompt_tokens + stats.completion_tokens
        if c.max_tokens_total is not None and tokens >= c.max_tokens_total:
            return f"token cap {c.max_tokens_total} reached after {sent} chunks ({tokens} tokens used)"
        cost = self.spent_cost_usd + stats.cost_usd
        if c.max_cost_usd is not None and cost >= c.max_cost_usd:
            return f"cost cap ${c.max_cost_usd:g} reached after {sent} chunks (${cost:.4f} spent)"
        return None

    def _backoff(self, attempt: int, error: Exception) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None)
        if headers is not None:
            for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
                value = headers.get(name)
                if value is None:
                    continue
                try:
                    secs = float(value) * scale
                except ValueError:
                    continue  # an HTTP date: fall back to our own backoff
                if secs >= 0:
                    return min(secs, MAX_RETRY_AFTER_S) + random.uniform(0, self.backoff_base_s / 10)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    @staticmethod
    def _retryable(error: Exception) -> bool:
        if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(error, openai.APIStatusError):
            return error.status_code in _RETRY_STATUS or error.status_code >= 500
        return False

    @staticmethod
    def _error_kind(error: Exception) -> str:
        if isinstance(error, openai.APITimeoutError):
            return "timeout"
        if isinstance(error, openai.APIConnectionError):
            return "connection"
        if isinstance(error, openai.APIStatusError):
            return f"http_{error.status_code}"
        return type(error).__name__

    def _describe(self, error: Exception) -> str:
        """A one-line, redacted description of an API error."""
        msg = str(error).splitlines()[0] if str(error) else ""
        return self._redact(f"{self._error_kind(error)}: {msg[:300]}")

    async def _request(self, client: openai.AsyncOpenAI, chunk: Chunk, n: int, stats: GenerationStats):
        """Send one chunk, retrying as configured.

        Returns:
            ``(content, prompt_tokens, completion_tokens)``, or None when the chunk failed.

        Raises:
            _Fatal: the endpoint refused the key or model.
        """
        attempt = 0
        force_plain = False
        while True:
            use_json = self._json_mode and not force_plain
            messages = self.prompt.messages(chunk.text, n, json_object=use_json)
            kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages}
            if use_json:
                kwargs["response_format"] = {"type": "json_object"}
            stats.llm_calls += 1
            try:
                resp = await client.chat.completions.create(**kwargs)
            except _FATAL_ERRORS as e:
                raise _Fatal(self._describe(e)) from None
            except openai.BadRequestError as e:
                if use_json:
                    # Perhaps the endpoint does not support response_format: retry plain.
                    logger.debug(
                        "teacher: 400 in JSON mode, retrying chunk %s without it: %s", chunk.key, self._describe(e)
                    )
                    force_plain = True
                    continue
                self._errors[self._error_kind(e)] += 1
                logger.warning("teacher: chunk %s failed: %s", chunk.key, self._describe(e))
                return None
            except openai.OpenAIError as e:
                if self._retryable(e) and attempt < self.config.max_retries:
                    delay = self._backoff(attempt, e)
                    attempt += 1
                    self._retries += 1
                    logger.debug(
                        "teacher: chunk %s: %s; retry %d/%d in %.2fs",
                        chunk.key, self._describe(e), attempt, self.config.max_retries, delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                self._errors[self._error_kind(e)] += 1
                logger.warning(
                    "teacher: chunk %s failed after %d attempt(s): %s", chunk.key, attempt + 1, self._describe(e)
                )
                return None
            try:
                content = resp.choices[0].message.content if resp.choices else None
                usage = getattr(resp, "usage", None)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                ct = int(getattr(usage, "completion_tokens", 0) or 0)
            except Exception as e:  # a malformed response object: count, don't crash
                self._errors["bad_response"] += 1
                logger.warning("teacher: chunk %s: unreadable response: %s", chunk.key, self._redact(repr(e)[:300]))
                return None
            if usage is None or (pt == 0 and ct == 0):
                # No usage reported: estimate, so token/cost caps still hold.
                pt = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
                ct = len(content or "") // CHARS_PER_TOKEN
                if not self._usage_missing_logged:
                    self._usage_missing_logged = True
                    logger.warning(
                        "teacher: the endpoint reports no token usage; estimating 1 token per %d chars",
                        CHARS_PER_TOKEN,
                    )
            if force_plain and self._json_mode:
                self._json_mode = False
                self._json_fallback = True
                logger.warning(
                    "teacher: the endpoint rejected response_format=json_object; "
                    "using the plain prompt for the rest of the run"
                )
            return content, pt, ct

    async def _generate(self, chunks: list[Chunk], n: int) -> GenerationResult:
        self._reset_run_state()
        stats = GenerationStats(chunks_in=len(chunks))
        cache = ReplyCache(self.cache_dir, fsync=self.fsync)
        phash = self.prompt.hash
        keys = [cache_key(text_hash(c.text), self.config.model, phash, n) for c in chunks]
        work: list[tuple[str, Chunk]] = []
        queued: set[str] = set()
        hits: set[int] = set()  # chunks served from the cache (or same text as another chunk)
        for i, (key, chunk) in enumerate(zip(keys, chunks)):
            if key in cache or key in queued:
                hits.add(i)
                continue
            queued.add(key)
            work.append((key, chunk))
        t0 = time.monotonic()
        done = 0
        last_log = t0
        try:
            if work:
                client = openai.AsyncOpenAI(
                    api_key=self._api_key.get_secret_value(),
                    base_url=self.config.base_url,
                    timeout=self.config.timeout_s,
                    max_retries=0,  # retries are ours: counted and capped here
                )
                items = iter(work)

                # a bar on a TTY; the log line below otherwise
                bar = Progress(len(work), "teacher (chunks)", every_s=1e9)

                async def worker() -> None:
                    nonlocal done, last_log
                    while not self._stop:
                        try:
                            key, chunk = next(items)
                        except StopIteration:
                            return
                        reason = self._budget_reason(stats)
                        if reason is not None:
                            if stats.budget_hit is None:
                                stats.budget_hit = reason
                                logger.warning("teacher: %s; keeping the queries generated so far", reason)
                            self._skipped_budget += 1
                            continue
                        stats.chunks_sent += 1
                        try:
                            got = await self._request(client, chunk, n, stats)
                        except _Fatal as e:
                            if self._fatal is None:
                                self._fatal = str(e)
                            self._stop = True
                            return
                        done += 1
                        bar.update(1)
                        if got is None:
                            stats.failed_chunks += 1
                            self._consecutive_failures += 1
                            if self.abort_after_failures and self._consecutive_failures >= self.abort_after_failures:
                                if self._fatal is None:
                                    self._fatal = (
                                        f"{self._consecutive_failures} chunks failed in a row "
                                        f"(errors: {dict(self._errors)})"
                                    )
                                self._stop = True
                            continue
                        self._consecutive_failures = 0
                        content, pt, ct = got
                        stats.prompt_tokens += pt
                        stats.completion_tokens += ct
                        stats.cost_usd += self._cost(pt, ct)
                        questions, rejected, generated = parse_questions(content, chunk.text, n)
                        entry = CacheEntry(questions, rejected, generated, pt, ct)
                        cache.put(key, entry, model=self.config.model, chunk_hash=text_hash(chunk.text), n=n)
                        now = time.monotonic()
                        if now - last_log > 30:
                            last_log = now
                            logger.info(
                                "teacher: %d/%d chunks sent, %d failed, %d tokens, $%.4f",
                                stats.chunks_sent, len(work), stats.failed_chunks,
                                stats.prompt_tokens + stats.completion_tokens, stats.cost_usd,
                            )

                try:
                    await asyncio.gather(*(worker() for _ in range(min(self.config.concurrency, len(work)))))
                finally:
                    bar.close()
                    await client.close()
        finally:
            cache.close()
            self.spent_chunks += stats.chunks_sent
            self.spent_tokens += stats.prompt_tokens + stats.completion_tokens
            self.spent_cost_usd += stats.cost_usd

        queries: list[Query] = []
        for i, (key, chunk) in enumerate(zip(keys, chunks)):
            entry = cache.get(key)
            if entry is None:
                continue
            if i in hits:
                stats.cache_hits += 1
            stats.generated += entry.generated
            stats.rejected.update(entry.rejected)
            for q in entry.questions:
                queries.append(Query(text=q, chunk_id=chunk.key, source="openai"))
        stats.kept = len(queries)
        stats.retries = self._retries
        stats.errors = dict(self._errors)
        self.last_info = {
            "retries": self._retries,
            "errors": dict(self._errors),
            "json_mode": self._json_mode,
            "json_mode_fallback": self._json_fallback,
            "skipped_budget": self._skipped_budget,
            "cache_file": str(cache.path) if cache.path else None,
            "cache_bad_lines": cache.bad_lines,
            "seconds": round(time.monotonic() - t0, 2),
        }
        logger.info(
            "teacher %s: %d queries for %d chunks (%d cached, %d sent, %d failed), %d tokens, $%.4f%s",
            self.name, stats.kept, stats.chunks_in, stats.cache_hits, stats.chunks_sent, stats.failed_chunks,
            stats.prompt_tokens + stats.completion_tokens, stats.cost_usd,
            f"; {stats.budget_hit}" if stats.budget_hit else "",
        )
        if self._fatal is not None:
            raise BadInput(
                self._redact(
                    f"teacher {self.name} at {self.config.base_url or 'api.openai.com'} failed: {self._fatal}. "
                    f"{len(cache)} replies are cached; fix the endpoint/key/model and re-run to resume."
                )
            )
        return GenerationResult(queries=queries, stats=stats)
