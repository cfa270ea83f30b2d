// The C++17 wrapper (include/iobus.hpp) against real socket.io-client
// peers: RAII handles, std::function handlers, connect requests and acks
// answered later from other threads, emit-with-ack completions (also the
// ones still pending when a Server is destroyed), broadcasts, namespace
// operations, selections (several except sids, emit with acks to many,
// fetch, join / leave), socket data, all rooms, server-side emits,
// iobus::Error, handler exceptions kept away from the library, moving a
// running Server, and poll mode (with subscriptions).

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "iobus.hpp"

namespace {

std::mutex threads_lock;
std::vector<std::thread> threads;

void later(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(threads_lock);
    threads.emplace_back([fn = std::move(fn)] {
        std::this_thread::sleep_for(std::chrono::milliseconds(80));
        fn();
    });
}

void join_threads() {
    std::vector<std::thread> all;
    {
        std::lock_guard<std::mutex> lock(threads_lock);
        all.swap(threads);
    }
    for (auto &t : all) t.join();
}

template <typename F>
iobus_status status_of(F &&f) {
    try {
        f();
    } catch (const iobus::Error &e) {
        return e.status();
    }
    return IOBUS_OK;
}

// The answer of a query (fetch_sockets, all_rooms) that `ask` issues with
// the handler it is given, waited for; `name` tells the queries apart.
template <typename Ask>
std::string answer_of(const char *name, Ask ask) {
    std::string got;
    ask([&got, name](std::string_view json) {
        got = std::string(json);
        h_log_add("answer %s", name);
    });
    LOG_WAIT((std::string("answer ") + name).c_str(), 5000);
    return got;
}

std::string event_line(const char *c, const std::string &rest) {
    return std::string("{\"t\":\"event\",\"c\":\"") + c + "\",\"event\":" + rest;
}

void test_config_and_errors() {
    SECTION("Config, Error, version");
    CHECK(iobus::version() == iobus_version());
    iobus::Config cfg;
    cfg.path("/io").ping_interval(2000).ping_timeout(5000).max_payload(100000).upgrade_timeout(1000)
        .connect_timeout(5000).transports(true, true).allow_upgrades(true).add_cors_origin("*").cors_credentials(false)
        .cors_max_age(60).max_attachments(5).max_buffered(1 << 20).worker_threads(2).serve_client(false)
        .http_header_timeout(2000).http_keep_alive_timeout(2000).write_timeout(5000).max_header_bytes(8192)
        .max_connections(100).no_static_dir().dispatch(IOBUS_DISPATCH_THREAD).host_queue_limit(1 << 20).free_timeout(500);
    CHECK(cfg.get() != nullptr);
    CHECK(status_of([&] { cfg.host_queue_limit(0); }) == IOBUS_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { cfg.free_timeout(600001); }) == IOBUS_ERR_INVALID_ARGUMENT);
    try {
        cfg.ping_interval(0);
        CHECK(!"ping_interval(0) throws");
    } catch (const iobus::Error &e) {
        CHECK(e.status() == IOBUS_ERR_INVALID_ARGUMENT);
        CHECK_HAS(e.what(), "ping interval");
        CHECK_HAS(e.what(), "invalid argument");
    }
    CHECK(status_of([&] { cfg.path("no-slash"); }) == IOBUS_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { cfg.path("/\xff"); }) == IOBUS_ERR_INVALID_UTF8);
    CHECK(status_of([&] { cfg.transports(false, false); }) == IOBUS_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { cfg.static_dir("/tmp").client_dir("/tmp"); }) == IOBUS_OK);
    iobus::Config moved(std::move(cfg));
    CHECK(moved.get() != nullptr && cfg.get() == nullptr);
    CHECK(status_of([&] { cfg.worker_threads(1); }) == IOBUS_ERR_NULL_ARGUMENT);
    iobus::Server server(moved);
    CHECK(status_of([&] { server.port(); }) == IOBUS_ERR_NOT_RUNNING);
    CHECK(status_of([&] { server.poll(); }) == IOBUS_ERR_WRONG_STATE);
    CHECK(server.poll_fd() == -1);
    CHECK(server.pending() == std::make_pair(std::size_t{0}, std::size_t{0}));
    CHECK(status_of([&] { server.emit("AAAAAAAAAAAAAAAAAAAA", "e"); }) == IOBUS_ERR_NOT_RUNNING);
    server.start();
    CHECK(server.port() != 0);
    CHECK(status_of([&] { server.start(); }) == IOBUS_ERR_ALREADY_RUNNING);
    CHECK(status_of([&] { server.emit("AAAAAAAAAAAAAAAAAAAA", "e"); }) == IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK(status_of([&] { server.of("/").emit("e", "[1,"); }) == IOBUS_ERR_INVALID_JSON);
    CHECK(status_of([&] { server.of("/").emit("disconnect"); }) == IOBUS_ERR_RESERVED_EVENT);
    CHECK(status_of([&] { server.add_namespace_pattern("x"); }) == IOBUS_ERR_INVALID_ARGUMENT);
    server.stop();
    server.stop();
    CHECK(status_of([&] {
              server.of("/").fetch_sockets([](std::string_view) { CHECK(!"never called for a failed fetch"); });
          }) == IOBUS_ERR_NOT_RUNNING);
    CHECK(status_of([&] {
              server.all_rooms("/", [](std::string_view) { CHECK(!"never called for a failed query"); });
          }) == IOBUS_ERR_NOT_RUNNING);
    iobus::Server moved_server(std::move(server));
    CHECK(moved_server.get() != nullptr && server.get() == nullptr);
    CHECK(status_of([&] { server.start(); }) == IOBUS_ERR_NULL_ARGUMENT);
    iobus::Server assigned;
    assigned = std::move(moved_server);
    assigned.start();
}

void test_server_with_peers() {
    iobus::Config cfg;
    cfg.ping_interval(2000).ping_timeout(5000);
    auto server = std::make_unique<iobus::Server>(cfg);
    iobus::Server &io = *server;
    std::atomic<int> exceptions{0};
    std::atomic<int> overlap{0}, depth{0};
    auto guard = [&] {
        if (depth.fetch_add(1) != 0) overlap++;
    };
    auto unguard = [&] { depth.fetch_sub(1); };

    io.set_exception_handler([&](std::exception_ptr e) {
        exceptions++;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception &ex) {
            h_log_add("exception %s", ex.what());
        }
    });
    io.on_connect("/", [&](iobus::ConnectRequest &req) {
        guard();
        std::string auth(req.auth());
        CHECK(req.socket_id().size() == 20);
        CHECK(req.nsp() == "/");
        CHECK_HAS(req.handshake().c_str(), "\"headers\":");
        h_log_add("connect %s auth=%s", std::string(req.socket_id()).c_str(), auth.c_str());
        if (auth.find("\"no\"") != std::string::npos) {
            CHECK(status_of([&] { req.reject("x", "{bad"); }) == IOBUS_ERR_INVALID_JSON);
            CHECK(bool(req));
            req.reject("Go away", "{\"why\":\"no\"}");
            CHECK(!req);
            CHECK(status_of([&] { req.accept(); }) == IOBUS_ERR_WRONG_STATE);
        } else if (auth.find("\"throw\"") != std::string::npos) {
            unguard();
            throw std::runtime_error("connect handler failed");
        } else if (auth.find("\"later\"") != std::string::npos) {
            auto shared = std::make_shared<iobus::ConnectRequest>(std::move(req));
            later([shared] {
                CHECK(shared->accept());
                h_log_add("accepted later");
            });
        }
        // Otherwise left undecided: accepted when the handler returns.
        unguard();
    });
    io.on("/", "echo", [&](const iobus::Event &ev) {
        guard();
        h_log_add("echo %s bins=%zu", std::string(ev.args()).c_str(), ev.binary_count());
        std::vector<iobus_buf> bins = ev.binaries();
        io.emit(ev.socket_id(), "echo", ev.args(), bins);
        if (iobus::Ack ack = ev.take_ack()) {
            ack.send(ev.args(), bins);
            CHECK(!ack);
            CHECK(status_of([&] { ack.send(); }) == IOBUS_ERR_WRONG_STATE);
        }
        CHECK(!ev.take_ack());
        try {
            ev.binary(99);
            CHECK(!"binary(99) throws");
        } catch (const std::out_of_range &) {
        }
        unguard();
    });
    io.on("/", "later", [&](const iobus::Event &ev) {
        guard();
        auto ack = std::make_shared<iobus::Ack>(ev.take_ack());
        CHECK(status_of([&] { ack->send("not json"); }) == IOBUS_ERR_INVALID_JSON);
        CHECK(bool(*ack));
        later([ack] { ack->send("[\"later\"]"); });
        unguard();
    });
    io.on("/", "throw", [&](const iobus::Event &) { throw std::logic_error("event handler failed"); });
    io.on("/", "bin", [&](const iobus::Event &ev) {
        static const std::uint8_t bytes[] = {1, 2, 3};
        std::string s = "xyz";
        io.emit(ev.socket_id(), "bin", R"([{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])",
                {iobus::buf(bytes, sizeof bytes), iobus::buf(s)});
    });
    io.on_any("/", [&](const iobus::Event &ev) { h_log_add("any %s", std::string(ev.name()).c_str()); });
    io.on_disconnect("/", [&](const iobus::Disconnect &d) {
        h_log_add("disconnect %s %s rooms=%s", std::string(d.socket_id).c_str(), std::string(d.reason).c_str(),
                  std::string(d.rooms_json).c_str());
    });
    io.add_namespace_pattern("/dyn-*");
    io.on("/dyn-*", "hi", [&](const iobus::Event &ev) { h_log_add("dyn %s", std::string(ev.nsp()).c_str()); });
    io.start("127.0.0.1", 0);
    const std::uint16_t port = io.port();

    peer *p = peer_start(port);
    if (!p) return;
    char a[32], b[32], c[32];

    SECTION("connect: accepted by default, refused, answered later, handler throws");
    CHECK(peer_connect(p, "a", "\"auth\":{\"k\":\"v\"}", a, sizeof a));
    peer_cmd(p, R"({"op":"connect","c":"r","auth":{"k":"no"}})");
    PEER_WAIT(p, R"({"t":"connect_error","c":"r","message":"Go away","data":{"why":"no"}})", 5000);
    CHECK(peer_connect(p, "b", "\"auth\":{\"k\":\"later\"}", b, sizeof b));
    LOG_WAIT("accepted later", 3000);
    peer_cmd(p, R"({"op":"connect","c":"x","auth":{"k":"throw"}})");
    PEER_WAIT(p, R"({"t":"connect_error","c":"x","message":"Internal server error"})", 5000);
    LOG_WAIT("exception connect handler failed", 3000);
    CHECK(peer_connect(p, "c", "", c, sizeof c));

    SECTION("events, binary, acks now and later");
    peer_cmd(p, R"({"op":"emit","c":"a","event":"echo","args":["hi",{"$bin":"AQID"}],"ack":true,"seq":1})");
    PEER_WAIT(p, R"({"t":"ack","c":"a","seq":1,"args":["hi",{"$bin":"AQID"}]})", 5000);
    PEER_WAIT(p, event_line("a", R"("echo","args":["hi",{"$bin":"AQID"}])").c_str(), 5000);
    peer_cmd(p, R"({"op":"emit","c":"a","event":"later","args":[],"ack":true,"seq":2})");
    PEER_WAIT(p, R"({"t":"ack","c":"a","seq":2,"args":["later"]})", 5000);
    peer_cmd(p, R"({"op":"emit","c":"a","event":"bin","args":[]})");
    PEER_WAIT(p, event_line("a", R"("bin","args":[{"$bin":"AQID"},{"$bin":"eHl6"}])").c_str(), 5000);
    peer_cmd(p, R"({"op":"emit","c":"a","event":"throw","args":[]})");
    LOG_WAIT("exception event handler failed", 3000);
    peer_cmd(p, R"({"op":"emit","c":"a","event":"other","args":[]})");
    LOG_WAIT("any other", 3000);
    io.off("/", "echo");
    peer_cmd(p, R"({"op":"emit","c":"a","event":"echo","args":[]})");
    LOG_WAIT("any echo", 3000);

    SECTION("emit-with-ack: reply and timeout, exactly once");
    std::atomic<int> replies{0}, timeouts{0};
    std::string reply_args;
    io.emit_with_ack(a, "ask", "[7]", iobus::Buffers{}, T(5000), [&](iobus_ack_status st, const iobus::Event *reply) {
        if (st == IOBUS_ACK_OK && reply) {
            reply_args = std::string(reply->args());
            CHECK(reply->name().empty());
        }
        replies++;
        h_log_add("reply done");
    });
    LOG_WAIT("reply done", 5000);
    CHECK(reply_args == "[7]");
    peer_reply(p, "a", "quiet", "\"mode\":\"ignore\"");
    io.emit_with_ack(a, "quiet", "[]", 200, [&](iobus_ack_status st, const iobus::Event *reply) {
        CHECK(st == IOBUS_ACK_TIMEOUT && reply == nullptr);
        timeouts++;
        h_log_add("timeout done");
    });
    LOG_WAIT("timeout done", 5000);
    CHECK(status_of([&] {
              io.emit_with_ack("AAAAAAAAAAAAAAAAAAAA", "x", "[]", 100, [](iobus_ack_status, const iobus::Event *) {
                  CHECK(!"never called for a failed emit");
              });
          }) == IOBUS_ERR_UNKNOWN_SOCKET);

    SECTION("broadcasts and namespace operations");
    io.join(a, "red");
    io.join(b, "red");
    io.join(c, "blue");
    CHECK_HAS(io.rooms(a).c_str(), "\"red\"");
    CHECK_HAS(io.handshake(a).c_str(), "\"auth\":{\"k\":\"v\"}");
    CHECK_HAS(answer_of("rooms", [&](iobus::JsonHandler done) { io.all_rooms("/", std::move(done)); }).c_str(),
              "\"blue\"");
    std::string red = answer_of("red", [&](iobus::JsonHandler done) {
        io.of("/").to("red").local_().fetch_sockets(std::move(done));
    });
    CHECK(red.find(a) != std::string::npos && red.find(b) != std::string::npos && red.find(c) == std::string::npos);
    io.of("/").to("red").except_socket(a).emit("m1", R"(["red minus a"])");
    io.of("/").except("red").emit("m2", R"(["not red"])");
    io.of("/").in("blue").to("red").except("blue").emit("m3", R"(["red not blue"])");
    io.of().emit("barrier");
    for (const char *cl : {"a", "b", "c"}) PEER_WAIT(p, event_line(cl, "\"barrier\"").c_str(), 5000);
    CHECK(peer_count(p, event_line("a", "\"m1\"").c_str()) == 0);
    CHECK(peer_count(p, event_line("b", "\"m1\"").c_str()) == 1);
    CHECK(peer_count(p, event_line("c", "\"m2\"").c_str()) == 1);
    CHECK(peer_count(p, event_line("a", "\"m2\"").c_str()) == 0);
    CHECK(peer_count(p, event_line("a", "\"m3\"").c_str()) == 1);
    CHECK(peer_count(p, event_line("c", "\"m3\"").c_str()) == 0);
    // Volatile packets wait for nothing: each goes out while the queue is empty.
    io.of().volatile_().emit("v1", "[1]");
    PEER_WAIT(p, event_line("c", "\"v1\"").c_str(), 5000);
    io.emit_volatile(c, "v2", "[2]");
    PEER_WAIT(p, event_line("c", "\"v2\"").c_str(), 5000);
    io.of("/").to("red").sockets_join("green");
    auto in_green = [&](iobus::JsonHandler done) { io.of("/").to("green").fetch_sockets(std::move(done)); };
    CHECK(answer_of("green", in_green).find(b) != std::string::npos);
    io.of("/").sockets_leave("green");
    CHECK(answer_of("green left", in_green) == "[]");

    SECTION("selections: several except sids, emit with acks, fetch, join / leave, data, all rooms, server-side");
    io.of("/").except_socket(a).except_socket(c).emit("m4", R"(["b only"])");
    io.of("/").to("red").to("blue").local_().except_socket(b).emit("m5");
    io.of().emit("barrier2");
    for (const char *cl : {"a", "b", "c"}) PEER_WAIT(p, event_line(cl, "\"barrier2\"").c_str(), 5000);
    CHECK(peer_count(p, "\"event\":\"m4\"") == 1 && peer_count(p, event_line("b", "\"m4\"").c_str()) == 1);
    CHECK(peer_count(p, "\"event\":\"m5\"") == 2 && peer_count(p, event_line("b", "\"m5\"").c_str()) == 0);

    peer_reply(p, "a", "poll", R"("mode":"args","args":["A",{"$bin":"AQ=="}])");
    peer_reply(p, "b", "poll", R"("mode":"args","args":["B"])");
    std::atomic<int> polls{0};
    std::string poll_replies;
    std::size_t poll_expected = 0, poll_bins = 0;
    io.of("/").to("red").timeout(T(5000)).emit_with_ack("poll", "[]", [&](const iobus::BroadcastAcks &r) {
        CHECK(r.status == IOBUS_ACK_OK);
        poll_replies = std::string(r.replies_json);
        poll_expected = r.expected;
        poll_bins = r.binary.size();
        if (r.binary.size() == 1) CHECK(r.binary.data()[0].len == 1 && r.binary.data()[0].data[0] == 1);
        polls++;
        h_log_add("poll done");
    });
    LOG_WAIT("poll done", 5000);
    CHECK(poll_expected == 2 && poll_bins == 1);
    CHECK_HAS(poll_replies.c_str(), R"(["A",{"_placeholder":true,"num":0}])");
    CHECK_HAS(poll_replies.c_str(), R"(["B"])");
    peer_reply(p, "b", "poll2", "\"mode\":\"ignore\"");
    io.of("/").to("red").timeout(200).emit_with_ack("poll2", "[]", iobus::Buffers{},
                                                    [&](const iobus::BroadcastAcks &r) {
        CHECK(r.status == IOBUS_ACK_TIMEOUT && r.expected == 2 && r.replies_json == "[[]]");
        polls++;
        h_log_add("poll2 done");
    });
    LOG_WAIT("poll2 done", 5000);
    CHECK(status_of([&] {
              io.of("/").emit_with_ack("connect", "[]", [](const iobus::BroadcastAcks &) {
                  CHECK(!"never called for a failed emit");
              });
          }) == IOBUS_ERR_RESERVED_EVENT);
    CHECK(status_of([&] { io.of("/").except_socket("not an id").emit("x"); }) == IOBUS_ERR_INVALID_ARGUMENT);

    io.set_data(a, R"({"name":"a"})");
    CHECK(io.data(a) == R"({"name":"a"})");
    CHECK(io.data(b) == "null");
    CHECK(status_of([&] { io.set_data(a, "{"); }) == IOBUS_ERR_INVALID_JSON);
    std::string fetched;
    io.of("/").to("red").except_socket(b).fetch_sockets([&](std::string_view json) {
        fetched = std::string(json);
        h_log_add("fetched");
    });
    LOG_WAIT("fetched", 5000);
    CHECK(fetched.find(a) != std::string::npos && fetched.find(b) == std::string::npos);
    CHECK_HAS(fetched.c_str(), R"("data":{"name":"a"})");
    CHECK_HAS(fetched.c_str(), R"("auth":{"k":"v"})");

    io.of("/").to("blue").join({"j1", "j2"});
    CHECK_HAS(io.rooms(c).c_str(), "\"j2\"");
    std::string rooms;
    io.all_rooms("/", [&](std::string_view json) {
        rooms = std::string(json);
        h_log_add("all rooms");
    });
    LOG_WAIT("all rooms", 5000);
    CHECK_HAS(rooms.c_str(), "\"j1\"");
    CHECK_HAS(rooms.c_str(), "\"red\"");
    io.of("/").to("j1").leave({"j1", "j2"});
    CHECK(io.rooms(c).find("j1") == std::string::npos);

    std::atomic<int> server_side_events{0};
    io.on_server_side_emit("/", [&](const iobus::Event &) { server_side_events++; });
    io.server_side_emit("/", "note", "[1]");
    io.server_side_emit_with_ack("/", "ask servers", "[]", iobus::Buffers{}, 1000, [&](const iobus::BroadcastAcks &r) {
        CHECK(r.status == IOBUS_ACK_OK && r.expected == 0 && r.replies_json == "[]");
        h_log_add("servers done");
    });
    LOG_WAIT("servers done", 5000);
    CHECK(server_side_events == 0);
    CHECK(status_of([&] { io.subscribe("/", IOBUS_RECORD_EVENT, "x", nullptr); }) == IOBUS_ERR_WRONG_STATE);
    io.unsubscribe("/", IOBUS_RECORD_SERVER_SIDE_EMIT);

    io.leave(b, "red");
    io.of("/").to("blue").disconnect_sockets();
    PEER_WAIT(p, R"({"t":"disconnect","c":"c","reason":"io server disconnect"})", 5000);
    io.disconnect(b, true);
    PEER_WAIT(p, R"({"t":"disconnect","c":"b")", 5000);
    char dyn[32];
    CHECK(peer_connect(p, "d", "\"nsp\":\"/dyn-1\"", dyn, sizeof dyn));
    peer_cmd(p, R"({"op":"emit","c":"d","event":"hi","args":[]})");
    LOG_WAIT("dyn /dyn-1", 3000);

    SECTION("a moved Server keeps serving; pending completions at destruction");
    iobus::Server moved(std::move(*server));
    peer_cmd(p, R"({"op":"emit","c":"a","event":"later","args":[],"ack":true,"seq":3})");
    PEER_WAIT(p, R"({"t":"ack","c":"a","seq":3,"args":["later"]})", 5000);
    peer_reply(p, "a", "forever", "\"mode\":\"ignore\"");
    std::atomic<int> at_destroy{0};
    moved.emit_with_ack(a, "forever", "[]", T(60000), [&](iobus_ack_status st, const iobus::Event *reply) {
        CHECK(reply == nullptr);
        CHECK(st == IOBUS_ACK_DISCONNECTED);
        at_destroy++;
    });
    PEER_WAIT(p, event_line("a", "\"forever\"").c_str(), 5000);
    std::atomic<int> many_at_destroy{0};
    moved.of().emit_with_ack("forever", "[]", [&](const iobus::BroadcastAcks &r) {
        // The server stops first: the recipient leaves, nothing more to wait for.
        CHECK(r.status == IOBUS_ACK_OK && r.expected == 1 && r.replies_json == "[]");
        many_at_destroy++;
    });
    PEER_WAIT(p, event_line("a", "\"forever\"").c_str(), 5000);
    join_threads();
    {
        iobus::Server gone(std::move(moved));
    }
    CHECK(at_destroy == 1 && many_at_destroy == 1);
    CHECK(polls == 2);
    CHECK(replies == 1 && timeouts == 1);
    CHECK(exceptions == 2);
    CHECK(overlap == 0);
    server.reset();
    peer_stop(p);
}

void test_poll_mode() {
    SECTION("poll mode through the wrapper");
    iobus::Config cfg;
    cfg.dispatch(IOBUS_DISPATCH_POLL);
    iobus::Server io(cfg);
    const std::thread::id me = std::this_thread::get_id();
    std::atomic<int> off_thread{0};
    io.on("/", "echo", [&](const iobus::Event &ev) {
        if (std::this_thread::get_id() != me) off_thread++;
        CHECK(status_of([&] { io.poll(); }) == IOBUS_ERR_WRONG_STATE);
        ev.take_ack().send(ev.args());
    });
    io.start();
    CHECK(io.poll_fd() >= 0);
    io.subscribe("/", IOBUS_RECORD_DISCONNECT, nullptr, nullptr);
    io.unsubscribe("/", IOBUS_RECORD_DISCONNECT);
    CHECK(status_of([&] { io.subscribe("/", IOBUS_RECORD_ACK, nullptr, nullptr); }) == IOBUS_ERR_INVALID_ARGUMENT);
    h_pump_server = io.get();
    peer *p = peer_start(io.port());
    if (!p) return;
    char a[32];
    CHECK(peer_connect(p, "a", "", a, sizeof a));
    peer_cmd(p, R"({"op":"emit","c":"a","event":"echo","args":["polled"],"ack":true,"seq":1})");
    PEER_WAIT(p, R"({"t":"ack","c":"a","seq":1,"args":["polled"]})", 5000);
    CHECK(io.poll(0) == 0);
    CHECK(off_thread == 0);
    peer_stop(p);
    h_pump_server = nullptr;
}

}  // namespace

int main() {
    h_init(180);
    test_config_and_errors();
    test_server_with_peers();
    test_poll_mode();
    join_threads();
    h_log_clear();
    return h_finish("test_cpp");
}
