//! A plugin's exports, whichever served world it was built for: one set of calls in the
//! current world's types, dispatched to the 0.2.0 bindings as they are or to the 0.1.0
//! bindings through [`crate::compat`].

use wasmtime::component::{InstancePre, ResourceAny};
use wasmtime::Store;

use crate::bindings::types::{Event, Metadata, StreamInfo};
use crate::bindings::{v0_1, Plugin, PluginPre, WorldVersion};
use crate::compat;
use crate::mailbox::MediaItem;
use crate::store::StoreState;

/// A component linked for its world version, ready to instantiate.
pub(crate) enum GuestPre {
    /// Built for the current world.
    V0_2(PluginPre<StoreState>),
    /// Built for world 0.1.0.
    V0_1(v0_1::PluginPre<StoreState>),
}

impl GuestPre {
    /// Checks the linked component's exports against the bindings of `version`.
    pub(crate) fn new(
        version: WorldVersion,
        pre: InstancePre<StoreState>,
    ) -> wasmtime::Result<Self> {
        Ok(match version {
            WorldVersion::V0_2 => GuestPre::V0_2(PluginPre::new(pre)?),
            WorldVersion::V0_1 => GuestPre::V0_1(v0_1::PluginPre::new(pre)?),
        })
    }

    /// The world version it was built for.
    pub(crate) fn version(&self) -> WorldVersion {
        match self {
            GuestPre::V0_2(_) => WorldVersion::V0_2,
            GuestPre::V0_1(_) => WorldVersion::V0_1,
        }
    }

    /// A new instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Guest> {
        Ok(match self {
            GuestPre::V0_2(pre) => Guest::V0_2(pre.instantiate_async(store).await?),
            GuestPre::V0_1(pre) => Guest::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance's exports.
pub(crate) enum Guest {
    /// Built for the current world.
    V0_2(Plugin),
    /// Built for world 0.1.0.
    V0_1(v0_1::Plugin),
}

/// A guest call's outcome: wasmtime's error (the instance is lost), or the guest's own
/// `result`.
type Answer = wasmtime::Result<Result<(), String>>;

impl Guest {
    /// `metadata()`.
    pub(crate) async fn metadata(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Metadata> {
        match self {
            Guest::V0_2(p) => p.zoomhost_plugin_guest().call_metadata(store).await,
            Guest::V0_1(p) => Ok(compat::metadata(
                p.zoomhost_plugin0_1_0_guest().call_metadata(store).await?,
            )),
        }
    }

    /// `init()`.
    pub(crate) async fn init(&self, store: &mut Store<StoreState>) -> Answer {
        match self {
            Guest::V0_2(p) => p.zoomhost_plugin_guest().call_init(store).await,
            Guest::V0_1(p) => p.zoomhost_plugin0_1_0_guest().call_init(store).await,
        }
    }

    /// `handle-event(event)`.
    pub(crate) async fn handle_event(
        &self,
        store: &mut Store<StoreState>,
        event: &Event,
    ) -> Answer {
        match self {
            Guest::V0_2(p) => {
                p.zoomhost_plugin_guest()
                    .call_handle_event(store, event)
                    .await
            }
            Guest::V0_1(p) => {
                let event = compat::event(event);
                p.zoomhost_plugin0_1_0_guest()
                    .call_handle_event(store, &event)
                    .await
            }
        }
    }

    /// The `media-session` constructor.
    pub(crate) async fn open_session(
        &self,
        store: &mut Store<StoreState>,
        info: &StreamInfo,
    ) -> wasmtime::Result<ResourceAny> {
        match self {
            Guest::V0_2(p) => {
                p.zoomhost_plugin_guest()
                    .media_session()
                    .call_constructor(store, info)
                    .await
            }
            Guest::V0_1(p) => {
                let info = compat::stream_info(info);
                p.zoomhost_plugin0_1_0_guest()
                    .media_session()
                    .call_constructor(store, &info)
                    .await
            }
        }
    }

    /// The `media-session` method for `item` (open and close are not methods: `Ok(Ok(()))`).
    pub(crate) async fn media(
        &self,
        store: &mut Store<StoreState>,
        session: ResourceAny,
        item: &MediaItem,
    ) -> Answer {
        match self {
            Guest::V0_2(p) => {
                let s = p.zoomhost_plugin_guest().media_session();
                match item {
                    MediaItem::Audio(f) => s.call_on_audio(store, session, f).await,
                    MediaItem::Transcript(t) => s.call_on_transcript(store, session, t).await,
                    MediaItem::Video(f) => s.call_on_video(store, session, f).await,
                    MediaItem::Share(f) => s.call_on_share(store, session, f).await,
                    MediaItem::Chat(m) => s.call_on_chat(store, session, m).await,
                    MediaItem::Join(w) => s.call_on_participant_join(store, session, w).await,
                    MediaItem::Leave(w) => s.call_on_participant_leave(store, session, w).await,
                    MediaItem::Speaker(w) => s.call_on_active_speaker(store, session, w).await,
                    MediaItem::State(st) => s.call_on_stream_state(store, session, *st).await,
                    MediaItem::Open(_) | MediaItem::Close => Ok(Ok(())),
                }
            }
            Guest::V0_1(p) => {
                let s = p.zoomhost_plugin0_1_0_guest().media_session();
                match item {
                    MediaItem::Audio(f) => {
                        s.call_on_audio(store, session, &compat::audio_frame(f))
                            .await
                    }
                    MediaItem::Transcript(t) => {
                        s.call_on_transcript(store, session, &compat::transcript(t))
                            .await
                    }
                    MediaItem::Video(f) => {
                        s.call_on_video(store, session, &compat::video_frame(f))
                            .await
                    }
                    MediaItem::Share(f) => {
                        s.call_on_share(store, session, &compat::video_frame(f))
                            .await
                    }
                    MediaItem::Chat(m) => s.call_on_chat(store, session, &compat::chat(m)).await,
                    MediaItem::Join(w) => {
                        s.call_on_participant_join(store, session, &compat::participant(w))
                            .await
                    }
                    MediaItem::Leave(w) => {
                        s.call_on_participant_leave(store, session, &compat::participant(w))
                            .await
                    }
                    MediaItem::Speaker(w) => {
                        s.call_on_active_speaker(store, session, &compat::participant(w))
                            .await
                    }
                    MediaItem::State(st) => {
                        s.call_on_stream_state(store, session, compat::stream_state(*st))
                            .await
                    }
                    MediaItem::Open(_) | MediaItem::Close => Ok(Ok(())),
                }
            }
        }
    }

    /// `snapshot()`.
    pub(crate) async fn snapshot(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        match self {
            Guest::V0_2(p) => p.zoomhost_plugin_guest().call_snapshot(store).await,
            Guest::V0_1(p) => p.zoomhost_plugin0_1_0_guest().call_snapshot(store).await,
        }
    }

    /// `restore(state)`.
    pub(crate) async fn restore(&self, store: &mut Store<StoreState>, state: &[u8]) -> Answer {
        match self {
            Guest::V0_2(p) => p.zoomhost_plugin_guest().call_restore(store, state).await,
            Guest::V0_1(p) => {
                p.zoomhost_plugin0_1_0_guest()
                    .call_restore(store, state)
                    .await
            }
        }
    }
}
