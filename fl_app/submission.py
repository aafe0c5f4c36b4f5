"""Who a peer is and whether its submission may be taken: the SPIFFE id from its verified
certificate, and the checks an Update must pass (known, allowed and joined client, current
round, selected, first, within size, sane sample count and train time) before its weights are
decoded."""

from __future__ import annotations

import math

import grpc

from fl_app import config as cfg
from fl_app.proto import fl_pb2
from fl_app.sessions import Round, Session


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The client's SPIFFE id from its verified certificate, or None without mTLS."""
    auth = context.auth_context()
    for key in ("peer_spiffe_id", "x509_subject_alternative_name"):
        for value in auth.get(key, []):
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.startswith("spiffe://"):
                return text
    return None


def check_submission(
    conf: cfg.ServerConfig,
    max_update_bytes: int,
    req: fl_pb2.Update,
    rnd: Round | None,
    session: Session | None,
    context: grpc.ServicerContext,
) -> tuple[grpc.StatusCode, str, str, str] | None:
    """None if ``req`` may be taken, else (gRPC status, failure class, reason, detail)."""
    cid = req.client_id
    if not 0 <= cid < conf.num_clients:
        return (
            grpc.StatusCode.NOT_FOUND,
            "protocol",
            "unknown_client",
            f"client id {cid} is not part of this run",
        )
    if conf.allowed_ids and peer_identity(context) not in conf.allowed_ids:
        return (
            grpc.StatusCode.PERMISSION_DENIED,
            "mtls",
            "identity_not_allowed",
            "peer identity is not on the allow-list",
        )
    if session is None:
        return (
            grpc.StatusCode.FAILED_PRECONDITION,
            "protocol",
            "not_joined",
            f"client {cid} has no open Join stream",
        )
    if rnd is None or req.round != rnd.number:
        current = rnd.number if rnd else None
        return (
            grpc.StatusCode.FAILED_PRECONDITION,
            "protocol",
            "stale_round",
            f"update for round {req.round}, current round is {current}",
        )
    if cid not in rnd.selected:
        return (
            grpc.StatusCode.FAILED_PRECONDITION,
            "protocol",
            "not_selected",
            f"client {cid} was not selected for round {rnd.number}",
        )
    if cid in rnd.updates:
        return (
            grpc.StatusCode.ALREADY_EXISTS,
            "protocol",
            "duplicate",
            f"client {cid} already submitted round {rnd.number}",
        )
    if req.ByteSize() > max_update_bytes:
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "invalid_update",
            "oversized",
            f"{req.ByteSize()} bytes, limit {max_update_bytes}",
        )
    if req.num_samples <= 0:
        return (
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_update",
            "bad_num_samples",
            f"num_samples {req.num_samples} must be > 0",
        )
    if not (math.isfinite(req.train_seconds) and req.train_seconds >= 0):
        # NaN/Inf would also make the client_update event unwritable (strict JSON).
        return (
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_update",
            "bad_train_seconds",
            f"train_seconds {req.train_seconds} must be a finite number >= 0",
        )
    return None
