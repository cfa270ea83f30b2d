/*
 * iobus.hpp — a header-only C++17 face for the iobus C ABI (iobus.h).
 *
 *   iobus::Config cfg;
 *   cfg.ping_interval(25000).add_cors_origin("*");
 *   iobus::Server io(cfg);
 *   io.on("/", "chat message", [&](const iobus::Event &ev) {
 *       io.of("/").emit("chat message", ev.args());
 *   });
 *   io.start("127.0.0.1", 3000);
 *
 * - Handles are RAII: Config, Server (move-only), Ack and ConnectRequest
 *   (move-only; each answers at most once).
 * - Failures throw iobus::Error, carrying the iobus_status and the message
 *   of iobus_last_error().
 * - Handlers are std::function. Every exception a handler throws is caught
 *   before it can reach the library and goes to the server's exception
 *   handler (set_exception_handler; by default it is written to stderr).
 * - Callbacks run as iobus.h describes: one at a time, on the library's
 *   dispatcher thread or inside Server::poll(). Event views are valid only
 *   during the handler; copy what you keep.
 * - Handlers stay alive until the Server is destroyed (callbacks already
 *   queued may still reach a handler that was replaced). Completions
 *   (emit-with-ack to one socket or to a selection, fetch_sockets,
 *   all_rooms, server-side emits with acks) are called exactly once: with
 *   the result — or, for those still pending when the Server is destroyed,
 *   with IOBUS_ACK_DISCONNECTED (or an empty JSON array) from the destructor.
 * - Server::of(nsp) starts a selection (iobus_selection): .to(room),
 *   .except(room), .except_socket(sid), .volatile_(), .local_(),
 *   .timeout(ms), then .emit(), .emit_with_ack(), .fetch_sockets(),
 *   .join(), .leave(), .disconnect().
 */
#ifndef IOBUS_HPP
#define IOBUS_HPP

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "iobus.h"

namespace iobus {

/// A failed iobus call: the status and the library's message.
class Error : public std::runtime_error {
public:
    Error(iobus_status status, const std::string &message)
        : std::runtime_error(message.empty() ? std::string(iobus_status_str(status))
                                             : std::string(iobus_status_str(status)) + ": " + message),
          status_(status) {}

    iobus_status status() const noexcept { return status_; }

private:
    iobus_status status_;
};

namespace detail {

inline void check(iobus_status status) {
    if (status != IOBUS_OK) {
        const char *message = iobus_last_error();
        throw Error(status, message ? message : "");
    }
}

/// A NUL-terminated copy of a string_view, for the C calls that need one.
inline std::string cstr(std::string_view s) { return std::string(s); }

/// Takes a string the library returned, frees it, gives a std::string.
inline std::string take_string(char *s, std::size_t len) {
    std::unique_ptr<char, void (*)(char *)> owned(s, iobus_string_free);
    return s ? std::string(s, len) : std::string();
}

/// NUL-terminated copies of room names and the pointer array the C calls take.
class CStrings {
public:
    explicit CStrings(const std::vector<std::string> &items) : items_(items) {
        ptrs_.reserve(items_.size());
        for (const std::string &s : items_) ptrs_.push_back(s.c_str());
    }
    const char *const *data() const { return ptrs_.empty() ? nullptr : ptrs_.data(); }
    std::size_t size() const { return ptrs_.size(); }

private:
    std::vector<std::string> items_;
    std::vector<const char *> ptrs_;
};

}  // namespace detail

/// A byte view for binary attachments.
inline iobus_buf buf(const void *data, std::size_t len) {
    return iobus_buf{static_cast<const std::uint8_t *>(data), len};
}
inline iobus_buf buf(std::string_view bytes) { return buf(bytes.data(), bytes.size()); }
inline iobus_buf buf(const std::vector<std::uint8_t> &bytes) { return buf(bytes.data(), bytes.size()); }

/// A read-only run of attachments: a pointer and a count (from a vector, an
/// initializer list, or a C array).
class Buffers {
public:
    Buffers() = default;
    Buffers(const iobus_buf *data, std::size_t count) : data_(data), count_(count) {}
    Buffers(const std::vector<iobus_buf> &v) : data_(v.data()), count_(v.size()) {}  // NOLINT: implicit on purpose
    /// Copies the (pointer, length) pairs; the bytes stay where they are.
    Buffers(std::initializer_list<iobus_buf> l) : owned_(l), data_(owned_.data()), count_(owned_.size()) {}
    Buffers(const Buffers &other) { *this = other; }
    Buffers &operator=(const Buffers &other) {
        if (this != &other) {
            owned_ = other.owned_;
            data_ = owned_.empty() ? other.data_ : owned_.data();
            count_ = other.count_;
        }
        return *this;
    }
    const iobus_buf *data() const { return count_ ? data_ : nullptr; }
    std::size_t size() const { return count_; }

private:
    std::vector<iobus_buf> owned_;
    const iobus_buf *data_ = nullptr;
    std::size_t count_ = 0;
};

/// Server settings (see iobus_config_* in iobus.h). Setters chain and throw
/// on invalid values.
class Config {
public:
    Config() : cfg_(iobus_config_new()) {
        if (!cfg_) throw Error(IOBUS_ERR_IO, "out of memory");
    }
    ~Config() { iobus_config_free(cfg_); }
    Config(const Config &) = delete;
    Config &operator=(const Config &) = delete;
    Config(Config &&other) noexcept : cfg_(std::exchange(other.cfg_, nullptr)) {}
    Config &operator=(Config &&other) noexcept {
        if (this != &other) {
            iobus_config_free(cfg_);
            cfg_ = std::exchange(other.cfg_, nullptr);
        }
        return *this;
    }

    Config &path(std::string_view p) { return set(iobus_config_set_path(raw(), detail::cstr(p).c_str())); }
    Config &ping_interval(std::uint64_t ms) { return set(iobus_config_set_ping_interval(raw(), ms)); }
    Config &ping_timeout(std::uint64_t ms) { return set(iobus_config_set_ping_timeout(raw(), ms)); }
    Config &max_payload(std::size_t bytes) { return set(iobus_config_set_max_payload(raw(), bytes)); }
    Config &upgrade_timeout(std::uint64_t ms) { return set(iobus_config_set_upgrade_timeout(raw(), ms)); }
    Config &connect_timeout(std::uint64_t ms) { return set(iobus_config_set_connect_timeout(raw(), ms)); }
    Config &transports(bool polling, bool websocket) {
        return set(iobus_config_set_transports(raw(), polling, websocket));
    }
    Config &allow_upgrades(bool allow) { return set(iobus_config_set_allow_upgrades(raw(), allow)); }
    Config &add_cors_origin(std::string_view origin) {
        return set(iobus_config_add_cors_origin(raw(), detail::cstr(origin).c_str()));
    }
    Config &cors_credentials(bool allow) { return set(iobus_config_set_cors_credentials(raw(), allow)); }
    Config &cors_max_age(std::uint64_t seconds) { return set(iobus_config_set_cors_max_age(raw(), seconds)); }
    Config &max_attachments(std::size_t count) { return set(iobus_config_set_max_attachments(raw(), count)); }
    Config &max_buffered(std::size_t bytes) { return set(iobus_config_set_max_buffered(raw(), bytes)); }
    Config &http_header_timeout(std::uint64_t ms) { return set(iobus_config_set_http_header_timeout(raw(), ms)); }
    Config &http_keep_alive_timeout(std::uint64_t ms) {
        return set(iobus_config_set_http_keep_alive_timeout(raw(), ms));
    }
    Config &write_timeout(std::uint64_t ms) { return set(iobus_config_set_write_timeout(raw(), ms)); }
    Config &max_header_bytes(std::size_t bytes) { return set(iobus_config_set_max_header_bytes(raw(), bytes)); }
    Config &max_connections(std::size_t count) { return set(iobus_config_set_max_connections(raw(), count)); }
    Config &worker_threads(std::size_t threads) { return set(iobus_config_set_worker_threads(raw(), threads)); }
    Config &batch_scheduling(bool on) { return set(iobus_config_set_batch_scheduling(raw(), on)); }
    Config &serve_client(bool serve) { return set(iobus_config_set_serve_client(raw(), serve)); }
    Config &client_dir(std::string_view dir) {
        return set(iobus_config_set_client_dir(raw(), detail::cstr(dir).c_str()));
    }
    Config &static_dir(std::string_view dir) {
        return set(iobus_config_set_static_dir(raw(), detail::cstr(dir).c_str()));
    }
    Config &no_static_dir() { return set(iobus_config_set_static_dir(raw(), nullptr)); }
    Config &dispatch(iobus_dispatch mode) { return set(iobus_config_set_dispatch(raw(), static_cast<int32_t>(mode))); }
    Config &host_queue_limit(std::size_t bytes) { return set(iobus_config_set_host_queue_limit(raw(), bytes)); }
    Config &free_timeout(std::uint64_t ms) { return set(iobus_config_set_free_timeout(raw(), ms)); }

    const iobus_config *get() const noexcept { return cfg_; }

private:
    iobus_config *raw() {
        if (!cfg_) throw Error(IOBUS_ERR_NULL_ARGUMENT, "moved-from Config");
        return cfg_;
    }
    Config &set(iobus_status status) {
        detail::check(status);
        return *this;
    }
    iobus_config *cfg_;
};

/// The answer to an incoming event that asked for one: send it once, now or
/// later, from any thread. Destroyed unanswered, it sends nothing.
class Ack {
public:
    Ack() = default;
    explicit Ack(iobus_ack *ack) noexcept : ack_(ack) {}
    ~Ack() { iobus_ack_free(ack_); }
    Ack(const Ack &) = delete;
    Ack &operator=(const Ack &) = delete;
    Ack(Ack &&other) noexcept : ack_(std::exchange(other.ack_, nullptr)) {}
    Ack &operator=(Ack &&other) noexcept {
        if (this != &other) {
            iobus_ack_free(ack_);
            ack_ = std::exchange(other.ack_, nullptr);
        }
        return *this;
    }

    /// Whether there is an answer left to send.
    explicit operator bool() const noexcept { return ack_ != nullptr; }

    /// Sends `args_json` (a JSON array) with attachments. Throws on invalid
    /// arguments (the Ack can still be sent) and when the client has left
    /// (IOBUS_ERR_DISCONNECTED; the Ack is spent).
    void send(std::string_view args_json = "[]", Buffers binary = {}) {
        if (!ack_) throw Error(IOBUS_ERR_WRONG_STATE, "the ack was already sent or is empty");
        iobus_status st = iobus_ack_send(ack_, args_json.data(), args_json.size(), binary.data(), binary.size());
        if (st == IOBUS_OK || st == IOBUS_ERR_DISCONNECTED) ack_ = nullptr;
        detail::check(st);
    }

private:
    iobus_ack *ack_ = nullptr;
};

/// An incoming event (or the reply to an emit-with-ack): a view valid during
/// the handler only.
class Event {
public:
    explicit Event(const iobus_event *ev) noexcept : ev_(ev) {}

    std::string_view nsp() const { return view(iobus_event_namespace(ev_)); }
    std::string_view socket_id() const { return view(iobus_event_socket_id(ev_)); }
    /// The event name; empty for an ack reply.
    std::string_view name() const { return view(iobus_event_name(ev_)); }
    /// The arguments as the JSON text of an array.
    std::string_view args() const {
        std::size_t len = 0;
        const char *p = iobus_event_args(ev_, &len);
        return p ? std::string_view(p, len) : std::string_view("[]");
    }
    std::size_t binary_count() const { return iobus_event_binary_count(ev_); }
    /// Attachment i (placeholder num i); throws std::out_of_range.
    iobus_buf binary(std::size_t i) const {
        std::size_t len = 0;
        const std::uint8_t *p = iobus_event_binary(ev_, i, &len);
        if (!p && i >= binary_count()) throw std::out_of_range("iobus::Event::binary");
        return iobus_buf{p, len};
    }
    /// Every attachment, ready to pass on (valid during the handler).
    std::vector<iobus_buf> binaries() const {
        std::vector<iobus_buf> out;
        for (std::size_t i = 0; i < binary_count(); i++) out.push_back(binary(i));
        return out;
    }
    bool wants_ack() const { return iobus_event_wants_ack(ev_); }
    /// The ack handle (empty when none was asked for or it was taken).
    Ack take_ack() const { return Ack(iobus_event_take_ack(ev_)); }

    const iobus_event *get() const noexcept { return ev_; }

private:
    static std::string_view view(const char *s) { return s ? std::string_view(s) : std::string_view(); }
    const iobus_event *ev_;
};

/// A connection waiting for a decision: accept or reject it once, now or
/// later, from any thread. Left undecided when the connect handler returns,
/// it is accepted; when the handler throws, it is refused.
class ConnectRequest {
public:
    explicit ConnectRequest(iobus_connect *req) noexcept : req_(req) {}
    ~ConnectRequest() {
        if (req_) iobus_connect_accept(req_);
    }
    ConnectRequest(const ConnectRequest &) = delete;
    ConnectRequest &operator=(const ConnectRequest &) = delete;
    ConnectRequest(ConnectRequest &&other) noexcept : req_(std::exchange(other.req_, nullptr)) {}
    ConnectRequest &operator=(ConnectRequest &&other) noexcept {
        if (this != &other) {
            if (req_) iobus_connect_accept(req_);
            req_ = std::exchange(other.req_, nullptr);
        }
        return *this;
    }

    /// Whether a decision is still to be made.
    explicit operator bool() const noexcept { return req_ != nullptr; }

    /// Gives up the handle without answering; the caller answers it through
    /// iobus_connect_accept / iobus_connect_reject.
    iobus_connect *release() noexcept { return std::exchange(req_, nullptr); }

    std::string_view nsp() const { return view(iobus_connect_namespace(need())); }
    std::string_view socket_id() const { return view(iobus_connect_socket_id(need())); }
    /// The auth payload as JSON text (`{}` when none).
    std::string_view auth() const { return view(iobus_connect_auth(need())); }
    /// The handshake as JSON text (auth, query, headers, address, port, url, issued).
    std::string handshake() const {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(iobus_connect_handshake(need(), &json, &len));
        return detail::take_string(json, len);
    }

    /// Accepts. Returns false when the client left first (the request is spent either way).
    bool accept() {
        iobus_status st = iobus_connect_accept(need());
        req_ = nullptr;
        if (st == IOBUS_ERR_DISCONNECTED) return false;
        detail::check(st);
        return true;
    }

    /// Refuses with a message and optional JSON data (empty: none). Throws on
    /// invalid arguments, leaving the request undecided.
    void reject(std::string_view message = "Connection refused", std::string_view data_json = {}) {
        std::string msg(message);
        detail::check(iobus_connect_reject(need(), msg.c_str(), data_json.empty() ? nullptr : data_json.data(),
                                           data_json.size()));
        req_ = nullptr;
    }

private:
    iobus_connect *need() const {
        if (!req_) throw Error(IOBUS_ERR_WRONG_STATE, "the connection was already answered");
        return req_;
    }
    static std::string_view view(const char *s) { return s ? std::string_view(s) : std::string_view(); }
    iobus_connect *req_;
};

/// What a disconnect handler receives (views valid during the handler).
struct Disconnect {
    std::string_view nsp;
    std::string_view socket_id;
    std::string_view reason;
    std::string_view rooms_json;
};

using ConnectHandler = std::function<void(ConnectRequest &)>;
using EventHandler = std::function<void(const Event &)>;
using DisconnectHandler = std::function<void(const Disconnect &)>;
/// What an emit with acks to many ended with (see iobus_broadcast_ack_cb);
/// views valid during the handler.
struct BroadcastAcks {
    iobus_ack_status status;
    /// Replies expected (clients reached, or servers asked).
    std::size_t expected;
    /// A JSON array with each reply's argument array.
    std::string_view replies_json;
    /// Every reply's attachments; placeholders are numbered across replies.
    Buffers binary;
};

/// Completion of an emit-with-ack: the status and, for IOBUS_ACK_OK, the reply.
using AckHandler = std::function<void(iobus_ack_status, const Event *reply)>;
/// Completion of an emit with acks to many.
using BroadcastAckHandler = std::function<void(const BroadcastAcks &)>;
/// Completion of a query answered with JSON (fetch_sockets, all_rooms).
using JsonHandler = std::function<void(std::string_view json)>;
using ExceptionHandler = std::function<void(std::exception_ptr)>;

class Server;

/// A selection of sockets of one namespace (iobus_selection): rooms to
/// reach, rooms and sockets to leave out, flags, an ack timeout; then what
/// to do with the selected sockets. Built with Server::of().
class Broadcast {
public:
    Broadcast &to(std::string_view room) {
        rooms_.emplace_back(room);
        return *this;
    }
    Broadcast &in(std::string_view room) { return to(room); }
    Broadcast &except(std::string_view room) {
        except_.emplace_back(room);
        return *this;
    }
    /// Leaves a socket out ("broadcast from a socket"); may be called for several.
    Broadcast &except_socket(std::string_view sid) {
        except_sids_.emplace_back(sid);
        return *this;
    }
    Broadcast &volatile_() {
        flags_ |= IOBUS_SELECTION_VOLATILE;
        return *this;
    }
    /// This server only (an adapter for several servers does not forward).
    Broadcast &local_() {
        flags_ |= IOBUS_SELECTION_LOCAL;
        return *this;
    }
    /// How long emit_with_ack waits for the replies (0: until each answered or left).
    Broadcast &timeout(std::uint64_t ms) {
        timeout_ms_ = ms;
        return *this;
    }

    inline void emit(std::string_view event, std::string_view args_json = "[]", Buffers binary = {}) const;
    /// Emits and asks every selected client for an ack; `done` is called exactly once.
    inline void emit_with_ack(std::string_view event, std::string_view args_json, Buffers binary,
                              BroadcastAckHandler done) const;
    void emit_with_ack(std::string_view event, std::string_view args_json, BroadcastAckHandler done) const {
        emit_with_ack(event, args_json, Buffers{}, std::move(done));
    }
    /// The selected sockets as a JSON array of {id, handshake, rooms, data}
    /// (iobus_selection_fetch_sockets); `done` is called exactly once. With
    /// local_(), this server's sockets only (their rooms are this server's).
    inline void fetch_sockets(JsonHandler done) const;
    inline void join(const std::vector<std::string> &rooms) const;
    inline void leave(const std::vector<std::string> &rooms) const;
    /// Disconnects the selected sockets (with `close`, their connections).
    inline void disconnect(bool close = false) const;
    void sockets_join(std::string_view room) const { join({std::string(room)}); }
    void sockets_leave(std::string_view room) const { leave({std::string(room)}); }
    void disconnect_sockets(bool close = false) const { disconnect(close); }

private:
    friend class Server;
    Broadcast(Server &server, std::string_view nsp) : server_(&server), nsp_(nsp) {}

    /// The C selection, valid while `self` and the three CStrings live.
    struct Selection {
        explicit Selection(const Broadcast &b)
            : rooms(b.rooms_), except(b.except_), except_sids(b.except_sids_), sel() {
            sel.nsp = b.nsp_.c_str();
            sel.rooms = rooms.data();
            sel.room_count = rooms.size();
            sel.except_rooms = except.data();
            sel.except_room_count = except.size();
            sel.except_sids = except_sids.data();
            sel.except_sid_count = except_sids.size();
            sel.flags = b.flags_;
            sel.timeout_ms = b.timeout_ms_;
        }
        detail::CStrings rooms, except, except_sids;
        iobus_selection sel;
    };

    Server *server_;
    std::string nsp_;
    std::vector<std::string> rooms_;
    std::vector<std::string> except_;
    std::vector<std::string> except_sids_;
    std::uint32_t flags_ = 0;
    std::uint64_t timeout_ms_ = 0;
};

/// A server (move-only). Destroying it stops and frees it; do not destroy it
/// from inside one of its own handlers.
class Server {
public:
    /// A server with default settings.
    Server() : Server(nullptr) {}
    explicit Server(const Config &config) : Server(config.get()) {}
    ~Server() { reset(); }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    Server(Server &&other) noexcept : server_(std::exchange(other.server_, nullptr)), state_(std::move(other.state_)) {}
    Server &operator=(Server &&other) noexcept {
        if (this != &other) {
            reset();
            server_ = std::exchange(other.server_, nullptr);
            state_ = std::move(other.state_);
        }
        return *this;
    }

    // ---- lifecycle ----

    /// Listens on host:port (port 0 picks a free one; see port()).
    void start(std::string_view host = "127.0.0.1", std::uint16_t port = 0) {
        detail::check(iobus_server_start(raw(), detail::cstr(host).c_str(), port));
    }
    std::uint16_t port() const {
        std::uint16_t p = 0;
        detail::check(iobus_server_port(raw(), &p));
        return p;
    }
    /// Stops gracefully; start() may be called again.
    void stop() { detail::check(iobus_server_stop(raw())); }
    /// IOBUS_DISPATCH_POLL: the descriptor that is readable while callbacks are pending.
    int poll_fd() const { return iobus_server_poll_fd(raw()); }
    /// IOBUS_DISPATCH_POLL: runs up to max_events pending callbacks here; how many ran.
    std::size_t poll(std::size_t max_events = 64) {
        std::size_t n = 0;
        detail::check(iobus_server_poll(raw(), max_events, &n));
        return n;
    }
    /// The callbacks waiting for the host, and the bytes they count against
    /// the host queue limit.
    std::pair<std::size_t, std::size_t> pending() const {
        std::size_t callbacks = 0, bytes = 0;
        detail::check(iobus_server_pending(raw(), &callbacks, &bytes));
        return {callbacks, bytes};
    }

    /// Where handler exceptions go (default: a line on stderr).
    void set_exception_handler(ExceptionHandler handler) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->on_exception = std::move(handler);
    }

    // ---- handlers ----

    void add_namespace_pattern(std::string_view pattern) {
        detail::check(iobus_server_add_namespace_pattern(raw(), detail::cstr(pattern).c_str()));
    }
    void on_connect(std::string_view nsp, ConnectHandler handler) {
        auto *slot = keep(std::make_unique<Slot>(state_.get(), std::move(handler)));
        detail::check(iobus_server_on_connect(raw(), detail::cstr(nsp).c_str(), &Server::connect_trampoline, slot));
    }
    void on(std::string_view nsp, std::string_view event, EventHandler handler) {
        auto *slot = keep(std::make_unique<Slot>(state_.get(), std::move(handler)));
        detail::check(iobus_server_on_event(raw(), detail::cstr(nsp).c_str(), detail::cstr(event).c_str(),
                                            &Server::event_trampoline, slot));
    }
    /// Removes the handler of one event.
    void off(std::string_view nsp, std::string_view event) {
        detail::check(
            iobus_server_on_event(raw(), detail::cstr(nsp).c_str(), detail::cstr(event).c_str(), nullptr, nullptr));
    }
    void on_any(std::string_view nsp, EventHandler handler) {
        auto *slot = keep(std::make_unique<Slot>(state_.get(), std::move(handler)));
        detail::check(iobus_server_on_any(raw(), detail::cstr(nsp).c_str(), &Server::event_trampoline, slot));
    }
    void on_disconnect(std::string_view nsp, DisconnectHandler handler) {
        auto *slot = keep(std::make_unique<Slot>(state_.get(), std::move(handler)));
        detail::check(
            iobus_server_on_disconnect(raw(), detail::cstr(nsp).c_str(), &Server::disconnect_trampoline, slot));
    }
    /// Events other servers of a cluster emit to `nsp` (server_side_emit
    /// there); the Event's socket_id is empty and take_ack() gives the reply.
    void on_server_side_emit(std::string_view nsp, EventHandler handler) {
        auto *slot = keep(std::make_unique<Slot>(state_.get(), std::move(handler)));
        detail::check(
            iobus_server_on_server_side_emit(raw(), detail::cstr(nsp).c_str(), &Server::event_trampoline, slot));
    }
    /// IOBUS_DISPATCH_POLL hosts that take records: records of `kind` without
    /// a callback (see iobus_server_subscribe).
    void subscribe(std::string_view nsp, iobus_record_kind kind, const char *event, void *user_data) {
        detail::check(iobus_server_subscribe(raw(), detail::cstr(nsp).c_str(), static_cast<std::int32_t>(kind), event,
                                             user_data));
    }
    /// Removes the handler of a slot, callback or subscription.
    void unsubscribe(std::string_view nsp, iobus_record_kind kind, const char *event = nullptr) {
        detail::check(
            iobus_server_unsubscribe(raw(), detail::cstr(nsp).c_str(), static_cast<std::int32_t>(kind), event));
    }

    // ---- sockets ----

    void emit(std::string_view sid, std::string_view event, std::string_view args_json = "[]", Buffers binary = {}) {
        detail::check(iobus_socket_emit(raw(), detail::cstr(sid).c_str(), detail::cstr(event).c_str(),
                                        args_json.data(), args_json.size(), binary.data(), binary.size()));
    }
    void emit_volatile(std::string_view sid, std::string_view event, std::string_view args_json = "[]",
                       Buffers binary = {}) {
        detail::check(iobus_socket_emit_volatile(raw(), detail::cstr(sid).c_str(), detail::cstr(event).c_str(),
                                                 args_json.data(), args_json.size(), binary.data(), binary.size()));
    }
    /// Emits and asks for an ack; `done` is called exactly once (see the top of this file).
    void emit_with_ack(std::string_view sid, std::string_view event, std::string_view args_json, Buffers binary,
                       std::uint64_t timeout_ms, AckHandler done) {
        PendingAck *pending = add_pending(std::make_unique<PendingAck>(state_.get(), std::move(done)));
        finish_pending(pending, iobus_socket_emit_with_ack(raw(), detail::cstr(sid).c_str(), detail::cstr(event).c_str(),
                                                           args_json.data(), args_json.size(), binary.data(),
                                                           binary.size(), timeout_ms, &Server::ack_trampoline,
                                                           pending));
    }
    void emit_with_ack(std::string_view sid, std::string_view event, std::string_view args_json,
                       std::uint64_t timeout_ms, AckHandler done) {
        emit_with_ack(sid, event, args_json, Buffers{}, timeout_ms, std::move(done));
    }
    void join(std::string_view sid, std::string_view room) {
        detail::check(iobus_socket_join(raw(), detail::cstr(sid).c_str(), detail::cstr(room).c_str()));
    }
    void leave(std::string_view sid, std::string_view room) {
        detail::check(iobus_socket_leave(raw(), detail::cstr(sid).c_str(), detail::cstr(room).c_str()));
    }
    void disconnect(std::string_view sid, bool close = false) {
        detail::check(iobus_socket_disconnect(raw(), detail::cstr(sid).c_str(), close));
    }
    /// The rooms of a socket as a JSON array.
    std::string rooms(std::string_view sid) {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(iobus_socket_rooms(raw(), detail::cstr(sid).c_str(), &json, &len));
        return detail::take_string(json, len);
    }
    /// The handshake of a socket as a JSON object.
    std::string handshake(std::string_view sid) {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(iobus_socket_handshake(raw(), detail::cstr(sid).c_str(), &json, &len));
        return detail::take_string(json, len);
    }
    /// Sets a socket's application data (any JSON value).
    void set_data(std::string_view sid, std::string_view json) {
        detail::check(iobus_socket_set_data(raw(), detail::cstr(sid).c_str(), json.data(), json.size()));
    }
    /// A socket's application data as JSON text ("null" until set).
    std::string data(std::string_view sid) {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(iobus_socket_data(raw(), detail::cstr(sid).c_str(), &json, &len));
        return detail::take_string(json, len);
    }

    // ---- namespaces ----

    /// A broadcast to namespace `nsp`: .to(room), .except(room), .emit(…).
    Broadcast of(std::string_view nsp = "/") { return Broadcast(*this, nsp); }
    /// Every room of `nsp` on every server, as a sorted JSON array; `done` is called exactly once.
    void all_rooms(std::string_view nsp, JsonHandler done) {
        PendingAck *pending = add_pending(std::make_unique<PendingAck>(state_.get(), std::move(done)));
        finish_pending(pending,
                       iobus_namespace_all_rooms(raw(), detail::cstr(nsp).c_str(), &Server::json_trampoline, pending));
    }
    /// Emits to the handlers of `nsp` on the other servers of a cluster.
    void server_side_emit(std::string_view nsp, std::string_view event, std::string_view args_json = "[]",
                          Buffers binary = {}) {
        detail::check(iobus_namespace_server_side_emit(raw(), detail::cstr(nsp).c_str(), detail::cstr(event).c_str(),
                                                       args_json.data(), args_json.size(), binary.data(),
                                                       binary.size()));
    }
    /// Like server_side_emit, collecting each server's reply; `done` is called exactly once.
    void server_side_emit_with_ack(std::string_view nsp, std::string_view event, std::string_view args_json,
                                   Buffers binary, std::uint64_t timeout_ms, BroadcastAckHandler done) {
        PendingAck *pending = add_pending(std::make_unique<PendingAck>(state_.get(), std::move(done)));
        finish_pending(pending, iobus_namespace_server_side_emit_with_ack(
                                    raw(), detail::cstr(nsp).c_str(), detail::cstr(event).c_str(), args_json.data(),
                                    args_json.size(), binary.data(), binary.size(), timeout_ms,
                                    &Server::broadcast_ack_trampoline, pending));
    }

    iobus_server *get() const noexcept { return server_; }

private:
    friend class Broadcast;

    struct State;

    /// One registered handler; lives as long as the server.
    struct Slot {
        Slot(State *s, ConnectHandler h) : state(s), on_connect(std::move(h)) {}
        Slot(State *s, EventHandler h) : state(s), on_event(std::move(h)) {}
        Slot(State *s, DisconnectHandler h) : state(s), on_disconnect(std::move(h)) {}
        State *state;
        ConnectHandler on_connect;
        EventHandler on_event;
        DisconnectHandler on_disconnect;
    };

    /// A completion still owed: one of the three handlers is set.
    struct PendingAck {
        PendingAck(State *s, AckHandler h) : state(s), done(std::move(h)) {}
        PendingAck(State *s, BroadcastAckHandler h) : state(s), done_many(std::move(h)) {}
        PendingAck(State *s, JsonHandler h) : state(s), done_json(std::move(h)) {}
        State *state;
        AckHandler done;
        BroadcastAckHandler done_many;
        JsonHandler done_json;

        /// The result of an operation that can no longer end otherwise.
        void abandon() {
            if (done) done(IOBUS_ACK_DISCONNECTED, nullptr);
            if (done_many) done_many(BroadcastAcks{IOBUS_ACK_DISCONNECTED, 0, "[]", Buffers{}});
            if (done_json) done_json("[]");
        }
    };

    /// What the trampolines reach through user_data; heap-allocated, so a
    /// moved Server keeps it in place.
    struct State {
        std::mutex mutex;
        std::list<std::unique_ptr<Slot>> slots;
        std::unordered_set<PendingAck *> pending;
        ExceptionHandler on_exception;

        void report(std::exception_ptr error) noexcept {
            ExceptionHandler handler;
            {
                std::lock_guard<std::mutex> lock(mutex);
                handler = on_exception;
            }
            try {
                if (handler) {
                    handler(error);
                    return;
                }
                std::rethrow_exception(error);
            } catch (const std::exception &e) {
                std::fprintf(stderr, "iobus: exception in a handler: %s\n", e.what());
            } catch (...) {
                std::fprintf(stderr, "iobus: exception in a handler\n");
            }
        }
    };

    explicit Server(const iobus_config *config) : state_(std::make_unique<State>()) {
        detail::check(iobus_server_new(config, &server_));
    }

    iobus_server *raw() const {
        if (!server_) throw Error(IOBUS_ERR_NULL_ARGUMENT, "moved-from Server");
        return server_;
    }

    Slot *keep(std::unique_ptr<Slot> slot) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->slots.push_back(std::move(slot));
        return state_->slots.back().get();
    }

    /// Keeps a completion until its trampoline (or the destructor) runs it.
    PendingAck *add_pending(std::unique_ptr<PendingAck> pending) {
        PendingAck *raw_pending = pending.get();
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->pending.insert(raw_pending);
        }
        pending.release();
        return raw_pending;
    }

    /// After the call that was given `pending`: on failure the completion
    /// will never run, so it is dropped and the error thrown.
    void finish_pending(PendingAck *pending, iobus_status st) {
        if (st == IOBUS_OK) return;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->pending.erase(pending);
        }
        delete pending;
        detail::check(st);
    }

    /// Takes a pending completion out of the set, for its trampoline.
    static void forget_pending(PendingAck *pending) {
        std::lock_guard<std::mutex> lock(pending->state->mutex);
        pending->state->pending.erase(pending);
    }

    void reset() noexcept {
        if (server_) {
            // No callback runs after this returns.
            iobus_server_free(server_);
            server_ = nullptr;
        }
        if (state_) {
            std::unordered_set<PendingAck *> left;
            {
                std::lock_guard<std::mutex> lock(state_->mutex);
                left.swap(state_->pending);
            }
            for (PendingAck *p : left) {
                try {
                    p->abandon();
                } catch (...) {
                    state_->report(std::current_exception());
                }
                delete p;
            }
            state_.reset();
        }
    }

    static void connect_trampoline(void *user_data, iobus_connect *req) noexcept {
        auto *slot = static_cast<Slot *>(user_data);
        ConnectRequest request(req);
        try {
            if (slot->on_connect) slot->on_connect(request);
        } catch (...) {
            if (iobus_connect *left = request.release()) iobus_connect_reject(left, "Internal server error", nullptr, 0);
            slot->state->report(std::current_exception());
        }
    }

    static void event_trampoline(void *user_data, const iobus_event *ev) noexcept {
        auto *slot = static_cast<Slot *>(user_data);
        try {
            if (slot->on_event) slot->on_event(Event(ev));
        } catch (...) {
            slot->state->report(std::current_exception());
        }
    }

    static void disconnect_trampoline(void *user_data, const char *nsp, const char *sid, const char *reason,
                                      const char *rooms_json) noexcept {
        auto *slot = static_cast<Slot *>(user_data);
        try {
            if (slot->on_disconnect) {
                slot->on_disconnect(Disconnect{nsp ? nsp : "", sid ? sid : "", reason ? reason : "",
                                               rooms_json ? rooms_json : "[]"});
            }
        } catch (...) {
            slot->state->report(std::current_exception());
        }
    }

    static void broadcast_ack_trampoline(void *user_data, iobus_ack_status status, std::size_t expected,
                                         const char *replies_json, std::size_t replies_len, const iobus_buf *binary,
                                         std::size_t binary_count) noexcept {
        auto *pending = static_cast<PendingAck *>(user_data);
        forget_pending(pending);
        try {
            if (pending->done_many) {
                pending->done_many(BroadcastAcks{status, expected,
                                                 replies_json ? std::string_view(replies_json, replies_len) : "[]",
                                                 Buffers(binary, binary_count)});
            }
        } catch (...) {
            pending->state->report(std::current_exception());
        }
        delete pending;
    }

    static void json_trampoline(void *user_data, const char *json, std::size_t len) noexcept {
        auto *pending = static_cast<PendingAck *>(user_data);
        forget_pending(pending);
        try {
            if (pending->done_json) pending->done_json(json ? std::string_view(json, len) : "[]");
        } catch (...) {
            pending->state->report(std::current_exception());
        }
        delete pending;
    }

    static void ack_trampoline(void *user_data, iobus_ack_status status, const iobus_event *reply) noexcept {
        auto *pending = static_cast<PendingAck *>(user_data);
        State *state = pending->state;
        forget_pending(pending);
        try {
            if (pending->done) {
                if (reply) {
                    Event event(reply);
                    pending->done(status, &event);
                } else {
                    pending->done(status, nullptr);
                }
            }
        } catch (...) {
            state->report(std::current_exception());
        }
        delete pending;
    }

    iobus_server *server_ = nullptr;
    std::unique_ptr<State> state_;
};

// ---- Broadcast, now that Server is complete ----

inline void Broadcast::emit(std::string_view event, std::string_view args_json, Buffers binary) const {
    Selection s(*this);
    detail::check(iobus_selection_emit(server_->raw(), &s.sel, detail::cstr(event).c_str(), args_json.data(),
                                       args_json.size(), binary.data(), binary.size()));
}

inline void Broadcast::emit_with_ack(std::string_view event, std::string_view args_json, Buffers binary,
                                     BroadcastAckHandler done) const {
    Selection s(*this);
    Server::PendingAck *pending =
        server_->add_pending(std::make_unique<Server::PendingAck>(server_->state_.get(), std::move(done)));
    server_->finish_pending(pending, iobus_selection_emit_with_ack(server_->raw(), &s.sel, detail::cstr(event).c_str(),
                                                                   args_json.data(), args_json.size(), binary.data(),
                                                                   binary.size(), &Server::broadcast_ack_trampoline,
                                                                   pending));
}

inline void Broadcast::fetch_sockets(JsonHandler done) const {
    Selection s(*this);
    Server::PendingAck *pending =
        server_->add_pending(std::make_unique<Server::PendingAck>(server_->state_.get(), std::move(done)));
    server_->finish_pending(pending,
                            iobus_selection_fetch_sockets(server_->raw(), &s.sel, &Server::json_trampoline, pending));
}

inline void Broadcast::join(const std::vector<std::string> &rooms) const {
    Selection s(*this);
    detail::CStrings names(rooms);
    detail::check(iobus_selection_join(server_->raw(), &s.sel, names.data(), names.size()));
}

inline void Broadcast::leave(const std::vector<std::string> &rooms) const {
    Selection s(*this);
    detail::CStrings names(rooms);
    detail::check(iobus_selection_leave(server_->raw(), &s.sel, names.data(), names.size()));
}

inline void Broadcast::disconnect(bool close) const {
    Selection s(*this);
    detail::check(iobus_selection_disconnect(server_->raw(), &s.sel, close));
}

/// The library version, "MAJOR.MINOR.PATCH".
inline std::string_view version() { return iobus_version(); }

}  // namespace iobus

#endif  // IOBUS_HPP
