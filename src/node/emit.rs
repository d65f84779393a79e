//! Sending: this node's own messages written (signed) into the send buffer,
//! and datagrams handed to [`Actions::send`] out of the links that send.

use crate::auth::Mode;
use crate::wire::{self, Auth, MessageType, Notice, Repr};

use super::{Actions, Core, Datagram, Dest};

impl Core {
    /// Writes one of our own messages into `buf`; returns its length.
    pub(super) fn emit_own(
        &mut self,
        kind: MessageType,
        flag_bits: u8,
        buf_is_goodbye: bool,
    ) -> usize {
        self.sequence = self.sequence.wrapping_add(1);
        let own = self.map.own_node();
        let mut repr = Repr::new(
            kind,
            own.addr,
            self.incarnation,
            self.settings.label,
            self.pacing.advertised_ms,
            self.hold_for(self.pacing.advertised_ms),
        );
        repr.flags = flag_bits;
        if kind == MessageType::Announce {
            repr.flags |= wire::flags::WATCHER;
        }
        repr.sequence = self.sequence;
        repr.members = u16::try_from(self.map.len()).unwrap_or(u16::MAX);
        repr.aliases.extend(own.aliases());
        repr.auth = Some(self.trailer());
        let buf = if buf_is_goodbye {
            &mut self.goodbye.buf
        } else {
            &mut self.buf
        };
        // Our own identity and settings were validated when they were taken:
        // an invalid message here is a bug, and sending nothing is the answer.
        let len = repr.emit(buf).unwrap_or(0);
        self.keys.sign(&mut buf[..len]);
        len
    }

    /// Writes a NOTICE about another node into `buf`; returns its length.
    pub(super) fn emit_notice(&mut self, notice: Notice) -> usize {
        self.sequence = self.sequence.wrapping_add(1);
        let mut repr = Repr::new(
            MessageType::Notice,
            self.primary,
            self.incarnation,
            self.settings.label,
            self.pacing.advertised_ms,
            self.hold_for(self.pacing.advertised_ms),
        );
        repr.sequence = self.sequence;
        repr.notice = Some(notice);
        repr.auth = Some(self.trailer());
        let len = repr.emit(&mut self.buf).unwrap_or(0);
        self.keys.sign(&mut self.buf[..len]);
        len
    }

    /// This node signs its messages (`--auth permissive` or `enforce`, which
    /// come with a key file): its peers that check them find them
    /// authenticated.
    pub(super) fn signs(&self) -> bool {
        self.settings.auth != Mode::Off
    }

    /// The trailer of every message this node sends, before signing: the
    /// key id and MAC are filled in by [`Keyring::sign`].
    pub(super) fn trailer(&self) -> Auth {
        Auth {
            key_id: crate::auth::UNSIGNED,
            stamp: self.started,
            mac: [0; wire::MAC_LEN],
        }
    }

    /// Sends one of our own messages: to one node out of `ifindex`, or to
    /// the group out of every interface that sends.
    pub(super) fn send_own(
        &mut self,
        kind: MessageType,
        to: Dest,
        ifindex: Option<u32>,
        flag_bits: u8,
        io: &mut impl Actions,
    ) {
        let len = self.emit_own(kind, flag_bits, false);
        match ifindex {
            Some(ifindex) => self.send_buf(len, to, ifindex, io),
            None => self.multicast(len, None, false, io),
        }
    }

    /// Sends `self.buf[..len]` to `to` out of `ifindex`.
    pub(super) fn send_buf(&mut self, len: usize, to: Dest, ifindex: u32, io: &mut impl Actions) {
        if len == 0 {
            return;
        }
        let src = self
            .links
            .iter()
            .find(|l| l.index == ifindex)
            .and_then(|l| l.addr);
        let d = Datagram {
            to,
            ifindex,
            src,
            bytes: &self.buf[..len],
        };
        let ok = io.send(&d);
        self.count_send(ok);
    }

    /// Sends `self.buf[..len]` (or the goodbye) to the group out of every
    /// sending link but `except`.
    pub(super) fn multicast(
        &mut self,
        len: usize,
        except: Option<u32>,
        goodbye: bool,
        io: &mut impl Actions,
    ) {
        // Nothing to send (our own message did not emit: a loopback address).
        if len == 0 {
            return;
        }
        for i in 0..self.links.len() {
            let link = self.links[i];
            if !self.sends_on(i) || Some(link.index) == except {
                continue;
            }
            let bytes = if goodbye {
                &self.goodbye.buf[..len]
            } else {
                &self.buf[..len]
            };
            let d = Datagram {
                to: Dest::Group,
                ifindex: link.index,
                src: link.addr,
                bytes,
            };
            let ok = io.send(&d);
            self.count_send(ok);
            if ok && except.is_some() {
                self.counters.relayed += 1;
            }
        }
    }

    pub(super) fn count_send(&mut self, ok: bool) {
        if ok {
            self.counters.sent += 1;
        } else {
            self.counters.send_errors += 1;
        }
    }

    pub(super) fn sends_on(&self, i: usize) -> bool {
        let link = &self.links[i];
        link.up && link.addr.is_some() && (!self.settings.routed || i == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn a_node_on_a_loopback_address_sends_nothing_not_even_empty_datagrams() {
        let lo = Ipv4Addr::new(127, 0, 0, 1);
        let mut c = Core::new(settings(1000), lo, &[link(IF0, lo)], Rng::from_seed(1), 0);
        let mut rec = Rec::default();
        // Rec::send panics on a datagram that does not parse (an empty one).
        run(&mut c, &mut rec, 10_000);
        c.handle(10_000, Input::Stop, &mut rec);
        run(&mut c, &mut rec, 11_000);
        assert!(rec.sent.is_empty(), "{:?}", rec.sent);
        assert_eq!(c.counters().sent, 0);
        assert!(c.finished());
    }
}
