"""Sessions in the scheduler: open/close, prompts built from earlier requests, KV kept locked.

A session (SGLang's /open_session) is a tree of its requests. A request with session_params
{id, rid, offset, replace} gets the prompt `parent tokens[:offset] + its own tokens`, where the
parent's tokens are its prompt and output; the radix cache then matches that prefix, so it is
not recomputed. Each finished request of an open session keeps its KV locked in the radix tree
(one lock on its deepest node) until the session is closed, the request's branch is replaced,
or the session stays idle longer than --session-idle-timeout. A session's requests are bounded
by its capacity (prompt + output tokens), so a session holds at most capacity tokens per branch.

/extend continues a recorded conversation instead (see conversations.py); both paths end in
`SessionManager.attach` (before the request is queued) and `on_finished` (after its KV went
back to the tree). All of it is in memory: a restart forgets every session.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from radixserve.engine.conversations import ConversationStore, lock_prefix, unlock
from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.kv_manager import KVManager
from radixserve.engine.request import Req
from radixserve.engine.session_protocol import SessionCtlReq, SessionParams, rejection


class Rejected(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class SessionNode:
    session_id: str
    rid: str
    req: Req  # its tokens (prompt + output) are what children continue
    parent: Optional[SessionNode]
    children: list[SessionNode] = field(default_factory=list)
    lock: Any = None  # the locked radix node once the request finished
    removed: bool = False  # its branch was replaced, or the session closed


@dataclass
class Session:
    id: str
    capacity: int
    nodes: dict[str, SessionNode] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)

    def running(self) -> bool:
        return any(not n.req.finished for n in self.nodes.values())


class SessionManager:
    def __init__(self, kv: KVManager, context_len: int, bos_token_id: Optional[int],
                 idle_timeout: float) -> None:  # fmt: skip
        self.kv = kv
        self.context_len = context_len
        self.bos_token_id = bos_token_id
        self.idle_timeout = idle_timeout
        self.sessions: dict[str, Session] = {}
        self.conversations = ConversationStore(kv, idle_timeout)
        # Requests attached and not finished: rid -> (session node or None, conversation rid).
        self.pending: dict[str, tuple[Optional[SessionNode], Optional[str]]] = {}
        self._next_expiry = 0.0

    # -- control (/open_session, /close_session, flush) -------------------------------------
    def control(self, msg: SessionCtlReq) -> list[Any]:
        if msg.op == "open":
            sid = msg.session_id or uuid.uuid4().hex
            if sid in self.sessions:
                return [400, f"Session {sid!r} is already open."]
            if msg.capacity < 1:
                return [400, "capacity_of_str_len must be at least 1."]
            self.sessions[sid] = Session(sid, msg.capacity)
            return [200, sid]
        if msg.op == "close":
            if msg.session_id not in self.sessions:
                return [404, f"No open session {msg.session_id!r} (never opened, closed, or "
                             f"expired after {self.idle_timeout:g} s idle)."]  # fmt: skip
            self.close(self.sessions[msg.session_id])
            return [200, ""]
        if msg.op == "list":
            return [200, sorted(self.sessions)]
        return [400, f"unknown session operation {msg.op!r}"]

    def close(self, session: Session) -> None:
        for node in session.nodes.values():
            self._remove(node)
        self.sessions.pop(session.id, None)

    def drop_conversations(self) -> None:
        """Forget every /extend conversation (before a flush; sessions must be closed)."""
        self.conversations.clear()

    def expire(self) -> None:
        """Close idle sessions and forget idle conversations (checked once a second)."""
        now = time.monotonic()
        if self.idle_timeout <= 0 or now < self._next_expiry:
            return
        self._next_expiry = now + 1.0
        for s in list(self.sessions.values()):
            if now - s.last_used > self.idle_timeout and not s.running():
                self.close(s)
        self.conversations.expire(now)

    # -- requests ---------------------------------------------------------------------------
    def attach(self, req: Req, params: SessionParams) -> Optional[FinishReason]:
        """Give `req` its full prompt; a finish reason with a status when it is refused."""
        session: Optional[Session] = None
        parent: Optional[SessionNode] = None
        try:
            if params.id is None:
                tokens = self._conversation(params)
            else:
                session, parent = self._session_parent(req, params)
                tokens = parent.req.fill_ids if parent is not None else []
            capacity = session.capacity if session is not None else None
            req.origin_input_ids = self._prompt(req, tokens, params.offset, capacity)
        except Rejected as e:
            return rejection(e.message, e.status)
        node = None
        if session is not None:  # accepted: only now may replace drop the other branches
            if params.replace:
                doomed = parent.children if parent is not None else list(session.nodes.values())
                for child in list(doomed):
                    self._drop_branch(session, child)
                if parent is not None:
                    parent.children = []
            node = SessionNode(session.id, req.rid, req, parent)
            session.nodes[req.rid] = node
            if parent is not None:
                parent.children.append(node)
            session.last_used = time.monotonic()
        self.pending[req.rid] = (node, None if session is not None else params.rid)
        return None

    def on_finished(self, req: Req) -> None:
        """After `req` finished and its KV went into the tree: record and lock its tokens."""
        node, conv = self.pending.pop(req.rid, (None, None))
        ok = req.finish_reason is not None and req.finish_reason.type != "abort"
        if node is not None:
            session = self.sessions.get(node.session_id)
            if session is not None:
                session.last_used = time.monotonic()
            if ok and session is not None and not node.removed:
                node.lock, _ = lock_prefix(self.kv, req.fill_ids)
        if ok:
            self.conversations.record(conv or req.rid, req.fill_ids, lock=conv is not None)

    # -- helpers ----------------------------------------------------------------------------
    def _conversation(self, params: SessionParams) -> list[int]:
        if not params.rid:
            raise Rejected("rid must name the conversation to extend.")
        entry = self.conversations.get(params.rid)
        if entry is None:
            raise Rejected(f"No conversation with rid {params.rid!r}: unknown, or forgotten "
                           f"after {self.idle_timeout:g} s idle or a cache flush.", 404)  # fmt: skip
        return entry.tokens

    def _session_parent(
        self, req: Req, params: SessionParams
    ) -> tuple[Session, Optional[SessionNode]]:
        session = self.sessions.get(params.id or "")
        if session is None:
            raise Rejected(f"No open session {params.id!r} (never opened, closed, or expired "
                           f"after {self.idle_timeout:g} s idle).", 404)  # fmt: skip
        if req.rid in session.nodes:
            raise Rejected(f"Session {session.id!r} already has a request {req.rid!r}.")
        if params.rid is None:
            return session, None
        parent = session.nodes.get(params.rid)
        if parent is None:
            raise Rejected(f"Session {session.id!r} has no request {params.rid!r}.", 404)
        if not parent.req.finished:
            raise Rejected(f"Request {params.rid!r} of session {session.id!r} is still "
                           "running; continue it once it has finished.")  # fmt: skip
        return session, parent

    def _prompt(self, req: Req, parent: list[int], offset: Optional[int],
                capacity: Optional[int]) -> list[int]:  # fmt: skip
        new = req.origin_input_ids
        if (
            parent
            and self.bos_token_id is not None
            and len(new) > 1
            and new[0] == self.bos_token_id
        ):
            new = new[1:]  # a continuation, not a new document
        if offset:
            if abs(offset) > len(parent):
                raise Rejected(f"offset {offset} is outside the parent's {len(parent)} tokens.")
            parent = parent[:offset]
        prompt = parent + new
        limit = self.context_len
        what = f"the model's context length ({self.context_len} tokens)"
        if capacity is not None and capacity < limit:
            limit, what = capacity, f"the session's capacity ({capacity} tokens)"
        if len(prompt) >= limit:
            raise Rejected(f"The prompt has {len(prompt)} tokens with the earlier ones it "
                           f"continues; it must leave room for output within {what}.")  # fmt: skip
        if len(prompt) + 1 > self.kv.size():
            raise Rejected(f"The prompt ({len(prompt)} tokens) does not fit in the KV cache.")
        # The caller cannot easily know the full prompt's length, so the output is cut at the
        # limit (finish_reason length) rather than the request refused.
        req.max_new_tokens = min(req.max_new_tokens, limit - len(prompt))
        return prompt

    def _drop_branch(self, session: Session, node: SessionNode) -> None:
        for child in node.children:
            self._drop_branch(session, child)
        session.nodes.pop(node.rid, None)
        self._remove(node)

    def _remove(self, node: SessionNode) -> None:
        node.removed = True
        unlock(self.kv, node.lock)
        node.lock = None
