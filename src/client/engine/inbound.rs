//! What the engine does with what its relay links report: logins, drops,
//! delivered envelopes, `sent` answers and errors (the inbound half of
//! [`Client`]; sending and the command-facing API stay in the parent module).

use super::*;

impl Client {
    pub(super) fn on_link_event(&mut self, ev: LinkEvent) -> Result<Option<Incoming>, ClientError> {
        Ok(match ev {
            LinkEvent::Up { relay, pending, reconnect, resumed, token, token_expires_at } => {
                tracing::info!(relay = %relay, resumed, pending, "logged in to relay");
                store::put_token(
                    self.store.conn(),
                    relay.as_str(),
                    token.expose(),
                    token_expires_at,
                )?;
                self.up.insert(relay.as_str().to_owned(), true);
                self.backlog.insert(relay.as_str().to_owned(), pending);
                self.flush(&relay)?;
                let aliased: Vec<String> = self
                    .aliases
                    .iter()
                    .filter(|(_, k)| k.as_str() == relay.as_str())
                    .map(|(a, _)| a.clone())
                    .collect();
                for a in aliased {
                    self.flush(&RelayUrl::parse(&a)?)?;
                }
                Some(Incoming::Up { relay, reconnect, pending })
            }
            LinkEvent::TokenRejected { relay } => {
                store::clear_token(self.store.conn(), relay.as_str())?;
                None
            }
            LinkEvent::Down { relay, reason, retry_in } => {
                self.up.insert(relay.as_str().to_owned(), false);
                Some(Incoming::Down { relay, reason, retry_in })
            }
            LinkEvent::Fatal { relay, error } => {
                self.up.insert(relay.as_str().to_owned(), false);
                self.links.remove(relay.as_str());
                self.aliases.retain(|_, k| k.as_str() != relay.as_str());
                Some(Incoming::Fatal(error))
            }
            LinkEvent::Frame { relay, frame } => self.on_frame(relay, frame)?,
        })
    }

    fn on_frame(
        &mut self,
        relay: RelayUrl,
        frame: ServerFrame,
    ) -> Result<Option<Incoming>, ClientError> {
        Ok(match frame {
            ServerFrame::Deliver { id, from, body, ts } => {
                let backlog = match self.backlog.get_mut(relay.as_str()) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                };
                self.on_deliver(relay, id, from, &body, ts, backlog)?
            }
            ServerFrame::Sent { id, status } => {
                // The relay holds it now. The marks need no fsync of their own
                // (one per send was two on the path of every `send`): lost with
                // the OS, the outbox re-sends and the relay drops the duplicate.
                self.store.relaxed(|tx| {
                    store::outbox_sent(tx, &id, now_secs())?;
                    store::history_sent(tx, &id, status, crate::client::now_ms())
                })?;
                Some(Incoming::Sent { id, status })
            }
            ServerFrame::Error { code, message, id: Some(id), .. } => {
                if is_permanent_send_error(code) {
                    store::outbox_failed(self.store.conn(), &id, code.as_str())?;
                    store::history_failed(self.store.conn(), &id)?;
                    Some(Incoming::SendFailed { id, code, message })
                } else {
                    tracing::warn!(
                        code = code.as_str(),
                        "relay deferred a message; it stays queued"
                    );
                    None
                }
            }
            ServerFrame::Error { code, message, rid: Some(rid), .. } => {
                Some(Incoming::Reply { rid, result: Err((code, message)) })
            }
            ServerFrame::Error { code, message, .. } => {
                tracing::warn!(relay = %relay, code = code.as_str(), %message, "relay error");
                None
            }
            ServerFrame::Ok { rid: Some(rid) } => Some(Incoming::Reply { rid, result: Ok(()) }),
            ServerFrame::Presence { peer, online } => Some(Incoming::Presence { peer, online }),
            ServerFrame::Ok { rid: None }
            | ServerFrame::Pong { .. }
            | ServerFrame::Challenge { .. }
            | ServerFrame::Welcome { .. } => None,
        })
    }

    fn on_deliver(
        &mut self,
        relay: RelayUrl,
        id: EnvelopeId,
        from: IdentityPublicKey,
        body: &[u8],
        ts: u64,
        backlog: bool,
    ) -> Result<Option<Incoming>, ClientError> {
        let outcome = receive(&mut self.store, &self.identity, &relay, &id, &from, body, ts)?;
        let report = match outcome {
            Received::Stored(row) if row.state == store::InboxState::New => {
                return Ok(Some(Incoming::Message { relay, row, fresh: true, backlog }));
            }
            Received::Duplicate(row) if row.state == store::InboxState::New => {
                return Ok(Some(Incoming::Message { relay, row, fresh: false, backlog }));
            }
            Received::Stored(_) | Received::Duplicate(_) => None,
            Received::Paired(peer) => Some(Incoming::Paired { peer }),
            Received::Moved(peer, new_relay) => {
                tracing::info!(peer = %peer.fmt_short(), relay = %new_relay, "peer moved to a new relay");
                self.connect(&new_relay)?;
                None
            }
            Received::Undecryptable(ours) => {
                tracing::warn!(peer = %from.fmt_short(), "peer could not decrypt one of our envelopes");
                store::outbox_undecryptable(self.store.conn(), &ours, &from)?
                    .then_some(Incoming::Undecryptable { id: ours, peer: from })
            }
            Received::Dropped(reason) => {
                tracing::warn!(from = %from.fmt_short(), %reason, "dropping an envelope");
                self.notify_undecryptable(&relay, &from, &id, body)?;
                Some(Incoming::Dropped { from, reason })
            }
        };
        // Stored as done (control message), a finished duplicate, or unusable: ack now.
        self.ack(&relay, &from, &id);
        Ok(report)
    }

    /// Tell the sender of an envelope we could not use that it is lost, so it
    /// never looks delivered (PROTOCOL.md §2.7, kind 0x03). Only towards a peer
    /// we know or one whose prekey message we refused: the relay routes between
    /// paired identities only, and a stranger would get nothing. Queued in the
    /// outbox like a message, so it survives a restart; a notice is never
    /// answered with a notice.
    fn notify_undecryptable(
        &mut self,
        relay: &RelayUrl,
        from: &IdentityPublicKey,
        id: &EnvelopeId,
        body: &[u8],
    ) -> Result<(), ClientError> {
        if crate::crypto::notice::is_notice(body) {
            return Ok(());
        }
        let known = store::get_peer(self.store.conn(), from)?.is_some();
        if !known && !matches!(crate::crypto::peek_prekey(body), Ok(Some(_))) {
            return Ok(());
        }
        let mut nid = [0u8; 16];
        crate::crypto::CryptoRng::fill(&mut crate::crypto::SystemRng, &mut nid);
        let row = OutboxRow {
            id: EnvelopeId(nid),
            peer: *from,
            relay_url: relay.to_string(),
            body: crate::crypto::notice::undecryptable_notice(&self.identity, from, &id.0),
            claim: None,
        };
        store::insert_outbox(self.store.conn(), &row, None, now_secs())?;
        self.offer(&row)
    }
}

/// Send errors that retrying cannot fix.
fn is_permanent_send_error(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::QueueFull
            | ErrorCode::RateLimited
            | ErrorCode::Internal
            | ErrorCode::ShuttingDown
    )
}
