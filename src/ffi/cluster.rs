//! Several nodes in one cluster, configured from C: the adapter that
//! connects them (Redis pub/sub, wire-compatible with the npm
//! `@socket.io/redis-adapter`, or a Redis stream, wire-compatible with
//! `@socket.io/redis-streams-adapter`).

use std::ffi::c_char;
use std::time::Duration;

use super::config::iobus_config;
use super::convert::{null, opt_text, text};
use super::{Error, guard, iobus_status};

/// How nodes talk through Redis.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_redis_mode {
    /// Pub/sub, as `@socket.io/redis-adapter` with its defaults: answers to
    /// requests on the shared response channel.
    IOBUS_REDIS_PUBSUB = 0,
    /// Pub/sub, answers on the asking node's own response channel (the npm
    /// adapter's `publishOnSpecificResponseChannel: true`).
    IOBUS_REDIS_PUBSUB_OWN_RESPONSE_CHANNEL = 1,
    /// A Redis stream, as `@socket.io/redis-streams-adapter` with its
    /// defaults (`key_prefix` names the stream and prefixes the channels;
    /// sessions under `sio:session:`). With connection state recovery on,
    /// sessions and missed packets are kept in Redis, so a client recovers
    /// on any node.
    IOBUS_REDIS_STREAMS = 2,
}

/// Joins the server to a cluster through the Redis server at `url`
/// (`"redis://host:port[/db]"`): broadcasts, room operations, socket
/// fetches and server-side emits reach every node on that Redis, iobus and
/// npm socket.io nodes alike. `key_prefix` is the channel prefix (and,
/// with `IOBUS_REDIS_STREAMS`, the stream's name; NULL: `"socket.io"`);
/// `requests_timeout_ms` bounds how long a request waits
/// for the other nodes (0: 5000). Redis unreachable makes
/// `iobus_server_start` fail with `IOBUS_ERR_IO`; Redis lost later is
/// reconnected to by itself, each node serving its own clients meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_redis(
    cfg: *mut iobus_config,
    url: *const c_char,
    key_prefix: *const c_char,
    mode: iobus_redis_mode,
    requests_timeout_ms: u64,
) -> iobus_status {
    guard(|| {
        // SAFETY: NULL or a live handle from `iobus_config_new`.
        let cfg = unsafe { cfg.as_mut() }.ok_or_else(|| null("config"))?;
        let url = unsafe { text(url, "url") }?;
        let key = unsafe { opt_text(key_prefix, "key_prefix") }?.unwrap_or("socket.io");
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://") || url.starts_with("unix://")) {
            return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "url must be a redis:// URL"));
        }
        if key.is_empty() {
            return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "key_prefix must not be empty"));
        }
        let timeout = Duration::from_millis(if requests_timeout_ms == 0 { 5000 } else { requests_timeout_ms });
        set_redis(cfg, url, key, mode, timeout)
    })
}

#[cfg(feature = "redis")]
fn set_redis(
    cfg: &mut iobus_config,
    url: &str,
    key: &str,
    mode: iobus_redis_mode,
    timeout: Duration,
) -> Result<(), Error> {
    cfg.options.adapter = match mode {
        iobus_redis_mode::IOBUS_REDIS_STREAMS => {
            crate::redis::RedisAdapter::streams(url).key(key).requests_timeout(timeout).build()
        }
        _ => crate::redis::RedisAdapter::pubsub(url)
            .key(key)
            .requests_timeout(timeout)
            .publish_on_specific_response_channel(mode == iobus_redis_mode::IOBUS_REDIS_PUBSUB_OWN_RESPONSE_CHANNEL)
            .build(),
    };
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn set_redis(
    _cfg: &mut iobus_config,
    _url: &str,
    _key: &str,
    _mode: iobus_redis_mode,
    _timeout: Duration,
) -> Result<(), Error> {
    Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "this build of iobus has no Redis support"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::config::{iobus_config_free, iobus_config_new};

    #[test]
    fn redis_settings_are_checked_and_set() {
        let cfg = iobus_config_new();
        let url = c"redis://127.0.0.1:6379";
        let set = |url: *const c_char, key: *const c_char| unsafe {
            iobus_config_set_redis(cfg, url, key, iobus_redis_mode::IOBUS_REDIS_PUBSUB, 0)
        };
        assert_eq!(set(std::ptr::null(), std::ptr::null()), iobus_status::IOBUS_ERR_NULL_ARGUMENT);
        assert_eq!(set(c"http://x".as_ptr(), std::ptr::null()), iobus_status::IOBUS_ERR_INVALID_ARGUMENT);
        assert_eq!(set(url.as_ptr(), c"".as_ptr()), iobus_status::IOBUS_ERR_INVALID_ARGUMENT);
        let null_cfg = unsafe {
            iobus_config_set_redis(
                std::ptr::null_mut(),
                url.as_ptr(),
                std::ptr::null(),
                iobus_redis_mode::IOBUS_REDIS_PUBSUB,
                0,
            )
        };
        assert_eq!(null_cfg, iobus_status::IOBUS_ERR_NULL_ARGUMENT);
        let status = set(url.as_ptr(), c"app".as_ptr());
        if cfg!(feature = "redis") {
            assert_eq!(status, iobus_status::IOBUS_OK);
            let adapter = format!("{:?}", unsafe { &(*cfg).options.adapter });
            assert!(adapter.contains("RedisAdapterFactory") && adapter.contains("\"app\""), "{adapter}");
            let streams = unsafe {
                iobus_config_set_redis(cfg, url.as_ptr(), c"app".as_ptr(), iobus_redis_mode::IOBUS_REDIS_STREAMS, 0)
            };
            assert_eq!(streams, iobus_status::IOBUS_OK);
            let adapter = format!("{:?}", unsafe { &(*cfg).options.adapter });
            assert!(adapter.contains("RedisStreamsAdapterFactory") && adapter.contains("\"app\""), "{adapter}");
        } else {
            assert_eq!(status, iobus_status::IOBUS_ERR_INVALID_ARGUMENT);
        }
        unsafe { iobus_config_free(cfg) };
    }
}
