//! Invites (list, create, accept, revoke) and what `room open` asks of the
//! daemon (record the room and publish its invite; a tunnel move).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};

use super::{ApiResult, AppState};
use crate::client::relay_url::RelayUrl;
use crate::client::store;
use crate::client::{ClientError, now_secs};
use crate::daemon::engine::Job;
use crate::daemon::types::*;

/// Default invite lifetime, as `agentroom invite create`.
const DEFAULT_INVITE_TTL_SECS: u64 = 24 * 3600;

/// Invites this identity created.
#[utoipa::path(get, path = "/v1/invites", tag = "daemon",
    responses((status = 200, body = InvitesResponse)))]
pub(super) async fn list_invites(State(s): State<AppState>) -> ApiResult<InvitesResponse> {
    let now = now_secs();
    let invites = s
        .db(move |db| {
            Ok(store::list_invites(db.conn())?
                .into_iter()
                .map(|r| InviteInfo {
                    status: if r.status == store::InviteStatus::Open && r.expires_at <= now {
                        "expired".into()
                    } else {
                        r.status.as_str().into()
                    },
                    id: r.id,
                    label: r.label,
                    relay: r.relay_url,
                    expires_at: r.expires_at,
                    created_at: r.created_at,
                    claimed_by: r.claimed_by,
                })
                .collect())
        })
        .await?;
    Ok(Json(InvitesResponse { invites }))
}

/// Create a single-use invite and publish it to the relay.
#[utoipa::path(post, path = "/v1/invites", tag = "daemon", request_body = InviteCreateRequest,
    responses((status = 200, body = InviteCreated), (status = 400, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub(super) async fn create_invite(
    State(s): State<AppState>,
    Json(req): Json<InviteCreateRequest>,
) -> ApiResult<InviteCreated> {
    let ttl = Duration::from_secs(req.ttl_secs.unwrap_or(DEFAULT_INVITE_TTL_SECS));
    if ttl.is_zero() {
        return Err(ClientError::Invite(crate::crypto::InviteError::Expired).into());
    }
    let relay = match req.relay {
        Some(r) => RelayUrl::parse(&r).map_err(ClientError::from)?,
        None => {
            let home = crate::client::home::Home::at(&s.info.home);
            match home.load_config().map_err(ClientError::from)?.relay_url {
                Some(r) => RelayUrl::parse(&r).map_err(ClientError::from)?,
                None => return Err(ClientError::NoRelay.into()),
            }
        }
    };
    let via = req.via.as_deref().map(RelayUrl::parse).transpose().map_err(ClientError::from)?;
    let label = req.label;
    let row = s.job(|done| Job::InviteCreate { relay, via, ttl, label, done }).await?;
    Ok(Json(invite_created(row)))
}

/// Accept an invite: pair with its host.
#[utoipa::path(post, path = "/v1/invites/accept", tag = "daemon", request_body = InviteAcceptRequest,
    responses((status = 200, body = InviteAccepted), (status = 422, body = ErrorBody)))]
pub(super) async fn accept_invite(
    State(s): State<AppState>,
    Json(req): Json<InviteAcceptRequest>,
) -> ApiResult<InviteAccepted> {
    let (invite, label) = (req.invite, req.label);
    let a = s.job(|done| Job::InviteAccept { invite, label, done }).await?;
    Ok(Json(InviteAccepted {
        peer: a.peer.pk.to_b64u(),
        label: a.peer.label,
        fingerprint: a.fingerprint,
        safety_number: a.safety_number,
        relay: a.peer.relay_url,
    }))
}

/// Revoke an open invite (by id or a unique prefix).
#[utoipa::path(delete, path = "/v1/invites/{id}", tag = "daemon",
    params(("id" = String, Path, description = "Invite id or a unique prefix")),
    responses((status = 200, body = InviteRevoked), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_invite(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<InviteRevoked> {
    let (row, relay_confirmed) = s.job(|done| Job::InviteRevoke { id, done }).await?;
    Ok(Json(InviteRevoked { id: row.id, relay_confirmed }))
}

fn invite_created(row: store::InviteRow) -> InviteCreated {
    InviteCreated {
        id: row.id,
        invite: row.encoded,
        relay: row.relay_url,
        expires_at: row.expires_at,
        label: row.label,
    }
}

/// `room open` in this home: record the room, adopt earlier guests, publish
/// the room's invite (see `RoomOpenRequest`).
#[utoipa::path(post, path = "/v1/room/open", tag = "room", request_body = RoomOpenRequest,
    responses((status = 200, body = RoomOpened), (status = 400, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub(super) async fn room_open(
    State(s): State<AppState>,
    Json(req): Json<RoomOpenRequest>,
) -> ApiResult<RoomOpened> {
    let local = RelayUrl::parse(&req.local).map_err(ClientError::from)?;
    let public = RelayUrl::parse(&req.public).map_err(ClientError::from)?;
    let ttl = Duration::from_secs(req.invite_ttl_secs);
    if ttl.is_zero() {
        return Err(ClientError::Invite(crate::crypto::InviteError::Expired).into());
    }
    let (port, label) = (req.port, req.label);
    let opened = s.job(|done| Job::RoomOpen { port, local, public, ttl, label, done }).await?;
    Ok(Json(RoomOpened {
        invite: invite_created(opened.invite),
        relay_update: opened.relay_update,
    }))
}

/// The room's tunnel came back at a new public URL: tell the guests, sign a
/// relay update, renew the invite if nobody accepted it.
#[utoipa::path(post, path = "/v1/room/moved", tag = "room", request_body = RoomMovedRequest,
    responses((status = 200, body = RoomMoved), (status = 400, body = ErrorBody)))]
pub(super) async fn room_moved(
    State(s): State<AppState>,
    Json(req): Json<RoomMovedRequest>,
) -> ApiResult<RoomMoved> {
    let local = RelayUrl::parse(&req.local).map_err(ClientError::from)?;
    let public = RelayUrl::parse(&req.public).map_err(ClientError::from)?;
    let ttl = Duration::from_secs(req.invite_ttl_secs);
    let (previous, invite_id, label) = (req.previous, req.invite_id, req.label);
    let moved = s
        .job(|done| Job::RoomMoved { local, public, previous, invite_id, ttl, label, done })
        .await?;
    Ok(Json(RoomMoved {
        peers_notified: u64::try_from(moved.peers_notified).unwrap_or(u64::MAX),
        relay_update: moved.relay_update,
        invite: moved.invite.map(invite_created),
        invite_open: moved.invite_open,
    }))
}
