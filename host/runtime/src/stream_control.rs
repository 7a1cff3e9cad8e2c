//! Plugins' requests on RTMS streams: the `stream-control` interface of the WIT world.
//!
//! A call passes two gates before it reaches the host's [`StreamControl`] (the RTMS
//! client, given to the [`PluginHost`](crate::PluginHost) with
//! [`set_stream_control`](crate::PluginHost::set_stream_control)):
//! 1. the operator's grant, `stream_control = true` in `[plugins.NAME]`; without it the
//!    call returns an error naming the grant, and is counted (`stream_control_denied`)
//!    and logged, as a denied outbound HTTP request is;
//! 2. an RTMS client in this host; without one the call returns
//!    "no RTMS client in this host".
//!
//! Requests act on the one stream that feeds every plugin: a close closes it for all,
//! and a video subscription replaces the previous one, whoever asked. The control only
//! queues a request; a call never waits for Zoom.

use std::sync::{Arc, RwLock};

use zoomhost_types::{ControlError, StreamControl};

use crate::bindings::zoomhost::plugin::stream_control;
use crate::identity::PluginIdentity;
use crate::stats::PluginStats;
use crate::store::StoreState;

/// The error a plugin gets when the host has no RTMS client to act on streams.
pub const NO_RTMS_CLIENT: &str = "no RTMS client in this host";

/// Where the host's [`StreamControl`] is kept: shared by every plugin's store, set once
/// the RTMS client exists (it is made after the plugins' router, which it feeds).
#[derive(Default)]
pub(crate) struct ControlSlot(RwLock<Option<Arc<dyn StreamControl>>>);

impl ControlSlot {
    /// Puts `control` in the slot (replacing any earlier one), or empties it.
    pub(crate) fn set(&self, control: Option<Arc<dyn StreamControl>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = control;
    }

    /// The control in the slot, if any.
    fn get(&self) -> Option<Arc<dyn StreamControl>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::fmt::Debug for ControlSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSlot")
            .field("set", &self.get().is_some())
            .finish()
    }
}

/// Runs one request of plugin `identity`: checks its grant, then hands the request to
/// the control in `slot`. Errors are the text the plugin gets.
fn request(
    identity: &PluginIdentity,
    slot: &ControlSlot,
    what: &str,
    act: impl FnOnce(&dyn StreamControl) -> Result<(), ControlError>,
) -> Result<(), String> {
    let name = identity.name();
    if !identity.grant().stream_control {
        PluginStats::bump(&identity.stats.stream_control_denied);
        tracing::warn!(
            plugin = name,
            "stream control denied: {what} is not granted to plugin {name} (grant it with `stream_control = true` in [plugins.{name}])"
        );
        return Err(format!(
            "{what}: stream control is not granted to plugin {name}; the operator grants it with `stream_control = true` in [plugins.{name}]"
        ));
    }
    let Some(control) = slot.get() else {
        return Err(format!("{what}: {NO_RTMS_CLIENT}"));
    };
    PluginStats::bump(&identity.stats.stream_control_requests);
    match act(control.as_ref()) {
        Ok(()) => {
            tracing::debug!(plugin = name, "stream control: {what} requested");
            Ok(())
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

impl stream_control::Host for StoreState {
    fn close_stream(&mut self, stream_id: String) -> Result<(), String> {
        let what = format!("close-stream {stream_id:?}");
        request(&self.identity, &self.control, &what, |c| {
            c.close_stream(&stream_id)
        })
    }

    fn subscribe_video(
        &mut self,
        stream_id: String,
        user_id: u32,
        subscribe: bool,
    ) -> Result<(), String> {
        let what = format!("subscribe-video {stream_id:?} user {user_id} {subscribe}");
        request(&self.identity, &self.control, &what, |c| {
            c.subscribe_video(&stream_id, user_id, subscribe)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::ResolvedGrant;

    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl StreamControl for Recording {
        fn close_stream(&self, stream_id: &str) -> Result<(), ControlError> {
            self.0.lock().unwrap().push(format!("close {stream_id}"));
            Ok(())
        }

        fn subscribe_video(
            &self,
            stream_id: &str,
            user: u32,
            on: bool,
        ) -> Result<(), ControlError> {
            if stream_id == "gone" {
                return Err(ControlError::UnknownStream(stream_id.into()));
            }
            self.0
                .lock()
                .unwrap()
                .push(format!("video {stream_id} {user} {on}"));
            Ok(())
        }
    }

    fn identity(granted: bool) -> PluginIdentity {
        let grant = ResolvedGrant {
            enabled: true,
            stream_control: granted,
            ..ResolvedGrant::default()
        };
        PluginIdentity::new("p", grant, None)
    }

    #[test]
    fn requests_pass_the_grant_then_reach_the_control() {
        let slot = ControlSlot::default();
        let granted = identity(true);
        let err = request(&granted, &slot, "close-stream \"s\"", |c| {
            c.close_stream("s")
        })
        .unwrap_err();
        assert!(err.contains(NO_RTMS_CLIENT), "{err}");

        let control = Arc::new(Recording::default());
        slot.set(Some(control.clone()));
        request(&granted, &slot, "x", |c| c.close_stream("s")).unwrap();
        request(&granted, &slot, "x", |c| c.subscribe_video("s", 7, true)).unwrap();
        let err =
            request(&granted, &slot, "x", |c| c.subscribe_video("gone", 7, true)).unwrap_err();
        assert!(err.contains("no open RTMS stream gone"), "{err}");
        assert_eq!(*control.0.lock().unwrap(), ["close s", "video s 7 true"]);
        assert_eq!(granted.stats.snapshot().stream_control_requests, 3);

        let denied = identity(false);
        let err = request(&denied, &slot, "x", |c| c.close_stream("s")).unwrap_err();
        assert!(err.contains("stream_control = true"), "{err}");
        assert!(err.contains("[plugins.p]"), "{err}");
        assert_eq!(denied.stats.snapshot().stream_control_denied, 1);
        assert_eq!(control.0.lock().unwrap().len(), 2);
    }
}
