// podwire_native: the few Linux syscalls podwire's data plane must batch.
//
// What this addon is
// ------------------
// podwire forwards pod traffic in userspace: every pod gets a TAP device, and frames travel between
// TAP fds and (for traffic to other nodes) a UDP socket carrying VXLAN. All forwarding decisions
// (bridging, routing, NAT, policy) are made in TypeScript. This file only moves bytes between file
// descriptors and memory that JavaScript owns.
//
// Why it exists
// -------------
// Node's `fs` and `dgram` modules cost one callback and one Buffer per frame. At packet rates that
// per-frame crossing between JavaScript and C++ dominates everything else. So the addon works in
// *batches*: one call from JS reads (or writes) up to N frames, using one syscall per frame for TAPs
// (read/write; one writev per run of small UDP datagrams of one flow) and one syscall per 64
// datagrams for UDP (recvmmsg/sendmmsg). The frames land in, or
// are taken from, a JS-owned "slab" (a Uint8Array), and their lengths go to a JS-owned Int32Array.
// Nothing here allocates memory per frame and nothing calls into JS per frame.
//
// The slab layout (shared with src/io/native.ts)
// ----------------------------------------------
// `buf` is cut into slots of `slotSize` bytes. Read-type calls put frame i at
//     buf[(firstSlot + i) * slotSize + headroom]
// and its length at lens[i]. The headroom lets JS later prepend headers (Ethernet + IP + UDP +
// VXLAN) in place, without copying. A frame or datagram too long for its slot is reported with
// length -1, so that JS drops it instead of forwarding a cut packet. Write-type calls take explicit
// byte offsets and lengths, so a frame can be sent from anywhere in a slab.
//
// Super-frames (the "Offload" section, with the byte work in offload.h)
// ---------------------------------------------------------------------
// With IFF_VNET_HDR and TUNSETOFFLOAD a TAP reads and writes TCP frames of up to 64 KiB, which is
// what makes a userspace data plane fast (one crossing per 64 KiB instead of per 1.5 KiB). To
// carry them between nodes the addon also owns the VXLAN underlay: sendVxlanBatch cuts each
// super-frame into MSS-sized packets with complete headers and checksums and sends them with
// UDP_SEGMENT (one syscall for up to 64 datagrams), recvVxlanBatch receives with UDP_GRO and
// merges consecutive segments of a TCP flow back into one super-frame for the destination TAP.
// The frames stay in JS-owned memory; JS still makes every forwarding decision in between.
//
// Readiness
// ---------
// `FdWatcher` wraps a libuv poll handle: when an fd becomes readable, JS is called once, and JS then
// drains the fd with readBatch/recvBatch. It is level-triggered: if JS leaves frames behind, it is
// called again on the next loop iteration.
//
// Error conventions
// -----------------
// * Misuse from JS (wrong types, out-of-range numbers, slots that do not fit in the buffer) throws
//   TypeError/RangeError before any syscall. Memory outside the JS buffers is never touched.
// * OS failures throw an Error whose message names the call, the object and the errno, e.g.
//   "openTap(pw0a1b2): EPERM Operation not permitted", and whose `.code` is the errno name.
// * "Would block" is never an error: reads return 0 frames, writes return how many were consumed.
//
// Built with NAPI_DISABLE_CPP_EXCEPTIONS: every error path throws a JS exception and returns at once.

#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "offload.h"

namespace {

// struct virtio_net_hdr_v1 from <linux/virtio_net.h>, which cannot be included from C++ (one of its
// structs has a field named `class`). Same layout: 12 bytes, the legacy 10-byte header plus
// num_buffers.
struct VirtioNetHdrV1 {
  uint8_t flags;
  uint8_t gsoType;
  uint16_t hdrLen;
  uint16_t gsoSize;
  uint16_t csumStart;
  uint16_t csumOffset;
  uint16_t numBuffers;
};
static_assert(sizeof(VirtioNetHdrV1) == 12, "virtio_net_hdr_v1 is 12 bytes");

// ---------------------------------------------------------------------------------------------
// Preallocated scratch space, so that the batch calls never allocate. thread_local because every
// worker thread runs its own JS thread that may call in concurrently.
// ---------------------------------------------------------------------------------------------

// recvmmsg/sendmmsg: at most kBatch messages per syscall.
constexpr unsigned kBatch = 64;
thread_local struct mmsghdr t_msgs[kBatch];
thread_local struct iovec t_iovs[kBatch];
thread_local struct sockaddr_in t_addrs[kBatch];

// readBatch: the byte past the end of a slot, to detect frames that do not fit (never read).
thread_local uint8_t t_spare;
// The most one TAP read can return: a 12-byte virtio-net header and a 64 KiB super-frame (a TAP's
// GSO limit is 64 KiB including headers; IPv4's total length is 16 bits), with 64 bytes to spare.
constexpr size_t kMaxTapRead = 12 + 65536 + 64;

// writeBatch's UDP runs: the USO header and one iovec per datagram payload.
thread_local uint8_t t_udpRunHdr[podwire::kVnetLen + podwire::kUdpRunHdr];
thread_local struct iovec t_udpRunIovs[podwire::kMaxUdpRun + 1];

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

// Frames dropped because write(2)/sendmmsg(2) failed permanently, or because JS passed an offset and
// length outside its buffer. Process-wide (shared by all worker threads), hence atomic.
std::atomic<uint64_t> g_writeErrors{0};
std::atomic<uint64_t> g_sendErrors{0};
std::atomic<uint64_t> g_tapUdpGsoWrites{0};      // writeBatch: USO writes (runs of UDP datagrams)
std::atomic<uint64_t> g_tapUdpGsoDatagrams{0};   // the datagrams in those writes
std::atomic<bool> g_tapUdpGsoOff{false};         // a TAP refused a USO write: stop trying

// ---------------------------------------------------------------------------------------------
// Errno naming and error objects
// ---------------------------------------------------------------------------------------------

// The symbolic name of an errno value ("EPERM"), as Node's own errors carry in `.code`.
// glibc >= 2.32 has strerrorname_np; elsewhere a table of the errors this addon can meet.
const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(err)) return name;
  return "UNKNOWN";
#else
  switch (err) {
#define PW_ERRNO(e) \
  case e:           \
    return #e;
    PW_ERRNO(EPERM) PW_ERRNO(ENOENT) PW_ERRNO(EINTR) PW_ERRNO(EIO) PW_ERRNO(ENXIO)
    PW_ERRNO(EBADF) PW_ERRNO(EAGAIN) PW_ERRNO(ENOMEM) PW_ERRNO(EACCES) PW_ERRNO(EFAULT)
    PW_ERRNO(EBUSY) PW_ERRNO(EEXIST) PW_ERRNO(ENODEV) PW_ERRNO(EINVAL) PW_ERRNO(ENFILE)
    PW_ERRNO(EMFILE) PW_ERRNO(ENOTTY) PW_ERRNO(ENOSPC) PW_ERRNO(EPIPE) PW_ERRNO(EBADFD)
    PW_ERRNO(ENOTSOCK) PW_ERRNO(EDESTADDRREQ) PW_ERRNO(EMSGSIZE) PW_ERRNO(EPROTOTYPE)
    PW_ERRNO(EOPNOTSUPP) PW_ERRNO(EAFNOSUPPORT) PW_ERRNO(EADDRINUSE) PW_ERRNO(EADDRNOTAVAIL)
    PW_ERRNO(ENETDOWN) PW_ERRNO(ENETUNREACH) PW_ERRNO(ENOBUFS) PW_ERRNO(ECONNREFUSED)
    PW_ERRNO(EHOSTUNREACH)
#undef PW_ERRNO
    default:
      return "UNKNOWN";
  }
#endif
}

// Build "<what>: <ENAME> <description>[ (<detail>)]" as an Error with `.code` = ENAME.
Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err,
                       const char* detail = nullptr) {
  std::string msg = what + ": " + ErrnoName(err) + " " + strerror(err);
  if (detail != nullptr) msg += std::string(" (") + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, ErrnoName(err)));
  return e;
}

// Throw ErrnoError and give the caller something to return.
Napi::Value ThrowErrno(Napi::Env env, const std::string& what, int err,
                       const char* detail = nullptr) {
  ErrnoError(env, what, err, detail).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// "a.b.c.d:port" for messages.
std::string AddrPort(uint32_t addr, uint32_t port) {
  return std::to_string(addr >> 24) + "." + std::to_string((addr >> 16) & 0xff) + "." +
         std::to_string((addr >> 8) & 0xff) + "." + std::to_string(addr & 0xff) + ":" +
         std::to_string(port);
}

std::string FdWhat(const char* fn, int fd) {
  return std::string(fn) + "(fd " + std::to_string(fd) + ")";
}

// ---------------------------------------------------------------------------------------------
// Argument checking. Each helper throws (TypeError/RangeError) and returns false on bad input.
// ---------------------------------------------------------------------------------------------

// An integer Number in [0, max].
bool ArgUint(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
             double max, uint32_t* out) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber()) {
    ThrowType(env, std::string(fn) + ": " + name + " must be a number");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max && std::floor(d) == d)) {
    ThrowRange(env, std::string(fn) + ": " + name + " must be an integer in [0, " +
                        std::to_string(static_cast<uint64_t>(max)) + "], got " +
                        info[i].ToString().Utf8Value());
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

// A file descriptor: integer in [0, 2^31 - 1].
bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* fn, int* out) {
  uint32_t v;
  if (!ArgUint(info, i, fn, "fd", 2147483647.0, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

// A typed array of exactly `type` (a Buffer counts as a Uint8Array). `data` points at element 0
// (byte offset already applied); `length` is in elements. A detached buffer gives length 0.
template <typename T>
bool ArgTyped(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
              napi_typedarray_type type, const char* typeName, T** data, size_t* length) {
  Napi::Env env = info.Env();
  napi_typedarray_type actual;
  if (info[i].IsTypedArray()) {
    void* p = nullptr;
    size_t len = 0;
    if (napi_get_typedarray_info(env, info[i], &actual, &len, &p, nullptr, nullptr) == napi_ok &&
        actual == type) {
      *data = static_cast<T*>(p);
      *length = p == nullptr ? 0 : len;
      return true;
    }
  }
  ThrowType(env, std::string(fn) + ": " + name + " must be a " + typeName);
  return false;
}

// The slot arguments shared by readBatch and recvBatch: firstSlot, slotSize, headroom, maxFrames.
// Checks that every slot that may be written lies inside `bufLen` and leaves room for >= 1 byte.
struct Slots {
  uint32_t firstSlot, slotSize, headroom, maxFrames;
};

bool ArgSlots(const Napi::CallbackInfo& info, size_t i, const char* fn, size_t bufLen,
              Slots* s) {
  Napi::Env env = info.Env();
  if (!ArgUint(info, i, fn, "firstSlot", 4294967295.0, &s->firstSlot) ||
      !ArgUint(info, i + 1, fn, "slotSize", 4294967295.0, &s->slotSize) ||
      !ArgUint(info, i + 2, fn, "headroom", 4294967295.0, &s->headroom) ||
      !ArgUint(info, i + 3, fn, "maxFrames", 4294967295.0, &s->maxFrames)) {
    return false;
  }
  if (s->slotSize == 0 || s->headroom >= s->slotSize) {
    ThrowRange(env, std::string(fn) + ": need 0 <= headroom < slotSize (headroom " +
                        std::to_string(s->headroom) + ", slotSize " +
                        std::to_string(s->slotSize) + ")");
    return false;
  }
  // (firstSlot + maxFrames) * slotSize <= bufLen, computed without overflow (all operands < 2^32).
  uint64_t end = (static_cast<uint64_t>(s->firstSlot) + s->maxFrames) * s->slotSize;
  if (end > bufLen) {
    ThrowRange(env, std::string(fn) + ": slots " + std::to_string(s->firstSlot) + ".." +
                        std::to_string(static_cast<uint64_t>(s->firstSlot) + s->maxFrames) +
                        " of " + std::to_string(s->slotSize) + " bytes do not fit in a " +
                        std::to_string(bufLen) + "-byte buffer");
    return false;
  }
  return true;
}

// `start` and `count` of writeBatch/sendBatch: [start, start + count) must index every array.
bool ArgRange(const Napi::CallbackInfo& info, size_t i, const char* fn, size_t minLen,
              uint32_t* start, uint32_t* count) {
  if (!ArgUint(info, i, fn, "start", 4294967295.0, start) ||
      !ArgUint(info, i + 1, fn, "count", 4294967295.0, count)) {
    return false;
  }
  if (static_cast<uint64_t>(*start) + *count > minLen) {
    ThrowRange(info.Env(), std::string(fn) + ": start + count (" +
                               std::to_string(static_cast<uint64_t>(*start) + *count) +
                               ") exceeds the length of the offsets/lengths arrays (" +
                               std::to_string(minLen) + ")");
    return false;
  }
  return true;
}

// Is [off, off + len) inside a buffer of bufLen bytes?
inline bool InBounds(uint32_t off, uint32_t len, size_t bufLen) {
  return static_cast<uint64_t>(off) + len <= bufLen;
}

// ---------------------------------------------------------------------------------------------
// TAP devices
// ---------------------------------------------------------------------------------------------

// openTap(name, vnetHdr) -> {fd, name, vnetHdr}
// Creates (or attaches to) TAP device `name` in the caller's network namespace. The fd is
// non-blocking and close-on-exec. IFF_NO_PI: frames are bare Ethernet, without the 4-byte packet-info
// prefix. With vnetHdr each frame is preceded by a 12-byte struct virtio_net_hdr_v1. An empty name
// lets the kernel choose one ("tap%d"); the name actually used is returned.
Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return ThrowType(env, "openTap: name must be a string");
  if (!info[1].IsBoolean()) return ThrowType(env, "openTap: vnetHdr must be a boolean");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bool vnetHdr = info[1].As<Napi::Boolean>().Value();
  std::string what = "openTap(" + name + ")";
  int hdrSizeArg = sizeof(VirtioNetHdrV1);
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    uint32_t v;
    if (!ArgUint(info, 2, "openTap", "vnetHdrSize", 24.0, &v)) return env.Undefined();
    if (v != sizeof(VirtioNetHdrV1) && v != podwire::kVnetTunnelLen) {
      return ThrowRange(env, "openTap: vnetHdrSize must be 12 or 24");
    }
    hdrSizeArg = static_cast<int>(v);
  }

  // The kernel silently truncates to IFNAMSIZ - 1 bytes; refuse instead of renaming behind the
  // caller's back. An embedded NUL would truncate too.
  if (name.size() >= IFNAMSIZ) {
    return ThrowErrno(env, what, EINVAL, "interface names are at most 15 bytes");
  }
  if (name.find('\0') != std::string::npos) {
    return ThrowErrno(env, what, EINVAL, "interface name contains a NUL byte");
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return ThrowErrno(env, what, err, err == ENOENT ? "/dev/net/tun" : nullptr);
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name.data(), name.size());  // size < IFNAMSIZ: stays NUL-terminated
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, what, err);
  }
  if (vnetHdr) {
    // The default header is the 10-byte legacy struct; the v1 header adds num_buffers (12 bytes),
    // which is what virtio-net and vhost use, so JS only ever has to handle one layout. The one
    // exception asks for 24: the tunnel TAP's virtio_net_hdr_v1_hash_tunnel (offload.h).
    int hdrSize = hdrSizeArg;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdrSize) < 0) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, what, err, "TUNSETVNETHDRSZ");
    }
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("name", Napi::String::New(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ)));
  result.Set("vnetHdr", Napi::Boolean::New(env, vnetHdr));
  return result;
}

void ForgetRecvContext(int fd);  // recvVxlanBatch's pending datagrams, below

// closeFd(fd): close(2). EINTR is success on Linux (the fd is gone either way).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "closeFd", &fd)) return env.Undefined();
  ForgetRecvContext(fd);
  if (close(fd) < 0 && errno != EINTR) return ThrowErrno(env, FdWhat("closeFd", fd), errno);
  return env.Undefined();
}

// spinPoll(fds, ready, budgetMicros) -> how many fds are readable (ready[i] = 1 for each), or 0
// once the budget is spent with none
// Busy polling, the way DPDK and VPP keep latency down: a daemon that has just forwarded a packet
// polls its fds for a while (poll(2) with a zero timeout, sched_yield between rounds so that other
// runnable tasks on this CPU go first) instead of going to sleep in epoll. A reply that comes back
// within the budget is then read at once, without the scheduler having to wake the daemon (on a
// VM an idle vCPU takes tens of microseconds to wake). The price is CPU time while idle, so the
// budget is small and the daemon only spins right after traffic (see daemon.ts).
constexpr size_t kMaxSpinFds = 1024;
thread_local struct pollfd t_spinFds[kMaxSpinFds];

Napi::Value SpinPoll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "spinPoll";
  int32_t* fds;
  uint8_t* ready;
  size_t n, readyLen;
  uint32_t budget;
  if (!ArgTyped(info, 0, fn, "fds", napi_int32_array, "Int32Array", &fds, &n) ||
      !ArgTyped(info, 1, fn, "ready", napi_uint8_array, "Uint8Array", &ready, &readyLen) ||
      !ArgUint(info, 2, fn, "budgetMicros", 1e6, &budget)) {
    return env.Undefined();
  }
  if (n == 0 || n > kMaxSpinFds) {
    return ThrowRange(env, "spinPoll: fds must hold 1.." + std::to_string(kMaxSpinFds) + " fds");
  }
  if (readyLen < n) return ThrowRange(env, "spinPoll: ready is shorter than fds");
  for (size_t i = 0; i < n; i++) {
    t_spinFds[i].fd = fds[i];  // a negative fd is skipped by poll(2)
    t_spinFds[i].events = POLLIN;
  }
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  const int64_t deadline = now.tv_sec * 1000000000LL + now.tv_nsec + budget * 1000LL;
  for (;;) {
    int r = poll(t_spinFds, n, 0);
    if (r > 0) {
      // An fd that is not open (POLLNVAL) counts in r but has nothing to read: it is skipped, as
      // a negative fd is, and spinning goes on if it was the only one.
      int readable = 0;
      for (size_t i = 0; i < n; i++) {
        ready[i] = (t_spinFds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? 1 : 0;
        readable += ready[i];
      }
      if (readable > 0) return Napi::Number::New(env, readable);
    } else if (r < 0 && errno != EINTR) {
      return ThrowErrno(env, "spinPoll: poll", errno);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec * 1000000000LL + now.tv_nsec >= deadline) return Napi::Number::New(env, 0);
    sched_yield();
  }
}

// readBatch(fd, buf, firstSlot, slotSize, headroom, maxFrames, lens) -> frames read
// One read per frame (a TAP returns exactly one frame per read) until the queue is empty (EAGAIN)
// or maxFrames frames have been read. A TAP silently truncates a frame that does not fit in the
// buffer and returns the truncated length, so into a slot smaller than kMaxTapRead each read is a
// readv(2) whose second iovec is one spare byte: a result longer than the slot's room means the
// frame was cut, and its length is reported as -1 (as recvBatch does for truncated datagrams) so
// that JS drops it. Into a slot with room for kMaxTapRead (the daemon's) nothing can be cut, and
// each read is a plain read(2).
Napi::Value ReadBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "readBatch";
  int fd;
  uint8_t* buf;
  size_t bufLen;
  int32_t* lens;
  size_t lensLen;
  Slots s;
  if (!ArgFd(info, 0, fn, &fd) ||
      !ArgTyped(info, 1, fn, "buf", napi_uint8_array, "Uint8Array", &buf, &bufLen) ||
      !ArgSlots(info, 2, fn, bufLen, &s) ||
      !ArgTyped(info, 6, fn, "lens", napi_int32_array, "Int32Array", &lens, &lensLen)) {
    return env.Undefined();
  }
  if (s.maxFrames > lensLen) {
    return ThrowRange(env, "readBatch: maxFrames (" + std::to_string(s.maxFrames) +
                               ") exceeds lens.length (" + std::to_string(lensLen) + ")");
  }

  uint32_t n = 0;
  const size_t room = s.slotSize - s.headroom;
  // A slot with room for the largest frame a TAP can hand out needs no spare byte: one read(2)
  // into one buffer is the kernel's cheapest copy (a single user buffer, no iovec to import).
  const bool roomy = room >= kMaxTapRead;
  struct iovec iov[2];
  iov[1].iov_base = &t_spare;
  iov[1].iov_len = 1;
  while (n < s.maxFrames) {
    iov[0].iov_base = buf + (static_cast<size_t>(s.firstSlot) + n) * s.slotSize + s.headroom;
    iov[0].iov_len = room;
    ssize_t r = roomy ? read(fd, iov[0].iov_base, room) : readv(fd, iov, 2);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      // A real error. Report it now if nothing was read; otherwise hand over what we have and let
      // the next call (which will hit the same error) report it.
      if (n == 0) return ThrowErrno(env, FdWhat(fn, fd), err);
      break;
    }
    if (r == 0) break;  // not expected from a TAP; never spin on it
    lens[n++] = static_cast<size_t>(r) > room ? -1 : static_cast<int32_t>(r);
  }
  return Napi::Number::New(env, n);
}

// How many frames from offsets/lens[i] on (at most `left`) form one run of UDP datagrams that may
// go to a TAP as one USO write (offload.h, "UDP runs toward a TAP"); 1 if frame i goes alone.
// Fills t_udpRunHdr and t_udpRunIovs for a run of two or more.
uint32_t PlanUdpRun(const uint8_t* buf, size_t bufLen, const uint32_t* offsets, const uint32_t* lens,
                    uint32_t i, uint32_t left) {
  podwire::UdpDatagram first, next;
  if (left < 2 || !InBounds(offsets[i], lens[i], bufLen) ||
      !podwire::InspectUdp4Datagram(buf + offsets[i], lens[i], &first)) {
    return 1;
  }
  uint32_t k = 1, total = first.payload;
  if (left > podwire::kMaxUdpRun) left = podwire::kMaxUdpRun;
  while (k < left) {
    const uint32_t off = offsets[i + k], len = lens[i + k];
    if (!InBounds(off, len, bufLen) || !podwire::InspectUdp4Datagram(buf + off, len, &next) ||
        next.payload > first.payload || 28 + total + next.payload > 0xffff ||
        !podwire::UdpRunCanJoin(first, next, k) ||
        (k == 1 && !podwire::UdpChecksumOk(first)) || !podwire::UdpChecksumOk(next)) {
      break;
    }
    t_udpRunIovs[k + 1] = {const_cast<uint8_t*>(next.f) + podwire::kUdpRunHdr, next.payload};
    total += next.payload;
    k++;
    if (next.payload < first.payload) break;  // a shorter datagram ends the run
  }
  if (k < 2) return 1;
  podwire::BuildUdpRunHeader(t_udpRunHdr, first, total);
  t_udpRunIovs[0] = {t_udpRunHdr, sizeof t_udpRunHdr};
  t_udpRunIovs[1] = {const_cast<uint8_t*>(first.f) + podwire::kUdpRunHdr, first.payload};
  return k;
}

// writeBatch(fd, buf, offsets, lens, start, count, udpRuns = false) -> frames consumed
// One write(2) per frame. Stops at EAGAIN (the device queue is full; JS retries from there).
// Any other failure (EIO while the link is down, EINVAL for a runt frame, ...) and any
// offset/length outside `buf` drops that frame: it is counted in writeErrors and consumed.
//
// udpRuns (a TAP with a virtio-net header; every frame starts with its 12-byte header): runs of
// consecutive UDP datagrams of one flow go as one USO write each (PlanUdpRun), which the kernel
// cuts back into the same datagrams. If the kernel refuses such a write (EINVAL: no UDP_L4 GSO
// from a TAP), the run goes frame by frame and runs are not tried again.
Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "writeBatch";
  int fd;
  uint8_t* buf;
  size_t bufLen;
  uint32_t *offsets, *lens;
  size_t offsetsLen, lensLen;
  uint32_t start, count;
  if (!ArgFd(info, 0, fn, &fd) ||
      !ArgTyped(info, 1, fn, "buf", napi_uint8_array, "Uint8Array", &buf, &bufLen) ||
      !ArgTyped(info, 2, fn, "offsets", napi_uint32_array, "Uint32Array", &offsets, &offsetsLen) ||
      !ArgTyped(info, 3, fn, "lens", napi_uint32_array, "Uint32Array", &lens, &lensLen) ||
      !ArgRange(info, 4, fn, offsetsLen < lensLen ? offsetsLen : lensLen, &start, &count)) {
    return env.Undefined();
  }
  if (info.Length() > 6 && !info[6].IsUndefined() && !info[6].IsBoolean()) {
    return ThrowType(env, "writeBatch: udpRuns must be a boolean");
  }
  const bool udpRuns = info.Length() > 6 && info[6].IsBoolean() && info[6].As<Napi::Boolean>().Value();

  bool runs = udpRuns;
  uint32_t i = 0;
  while (i < count) {
    if (runs && !g_tapUdpGsoOff.load(std::memory_order_relaxed)) {
      const uint32_t k = PlanUdpRun(buf, bufLen, offsets + start, lens + start, i, count - i);
      if (k > 1) {
        ssize_t r;
        do r = writev(fd, t_udpRunIovs, static_cast<int>(k + 1)); while (r < 0 && errno == EINTR);
        if (r >= 0) {
          g_tapUdpGsoWrites.fetch_add(1, std::memory_order_relaxed);
          g_tapUdpGsoDatagrams.fetch_add(k, std::memory_order_relaxed);
          i += k;
          continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINVAL) g_tapUdpGsoOff.store(true, std::memory_order_relaxed);
        // Otherwise (EIO: link down, ...) the rest of this batch goes one by one below, meeting
        // the same error and counted there, without planning more runs.
        runs = false;
      }
    }
    uint32_t off = offsets[start + i], len = lens[start + i];
    if (!InBounds(off, len, bufLen)) {
      g_writeErrors.fetch_add(1, std::memory_order_relaxed);
      i++;
      continue;
    }
    ssize_t r = write(fd, buf + off, len);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      g_writeErrors.fetch_add(1, std::memory_order_relaxed);
    }
    i++;
  }
  return Napi::Number::New(env, i);
}

// ---------------------------------------------------------------------------------------------
// UDP underlay
// ---------------------------------------------------------------------------------------------


// Ask for a big socket buffer: the FORCE variant (needs CAP_NET_ADMIN) ignores net.core.*mem_max;
// without the capability fall back to the plain option, which the kernel caps. Best effort.
void SetSockBuf(int fd, int forceOpt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, forceOpt, &bytes, sizeof bytes) < 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}

// An IPv4 socket address from a host-order address and port (the one place that builds one).
inline struct sockaddr_in Sockaddr4(uint32_t addr, uint32_t port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(addr);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  return sa;
}

// A non-blocking, close-on-exec UDP socket with a 4 MiB send buffer (and receive buffer, if
// asked), bound to addr:port. Returns the fd, or -errno.
int BindUdp4(uint32_t addr, uint32_t port, bool bigRcvBuf) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (bigRcvBuf) SetSockBuf(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20);
  SetSockBuf(fd, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);
  struct sockaddr_in sa = Sockaddr4(addr, port);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

// openUdp(addr, port) -> fd
// A non-blocking, close-on-exec UDP socket bound to addr:port (addr is a host-order IPv4 u32;
// 0 = INADDR_ANY), with 4 MiB send and receive buffers to absorb bursts between batches.
//
// SO_REUSEADDR is deliberately NOT set: UDP has no TIME_WAIT, so it would buy nothing on restart,
// and on Linux it lets two sockets that both set it bind the same address and port, silently
// splitting (or stealing) the VXLAN traffic. Without it a second binder fails with EADDRINUSE.
Napi::Value OpenUdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t addr, port;
  if (!ArgUint(info, 0, "openUdp", "addr", 4294967295.0, &addr) ||
      !ArgUint(info, 1, "openUdp", "port", 65535.0, &port)) {
    return env.Undefined();
  }
  int fd = BindUdp4(addr, port, true);
  if (fd < 0) return ThrowErrno(env, "openUdp(" + AddrPort(addr, port) + ")", -fd);
  return Napi::Number::New(env, fd);
}

// openRawIp() -> fd
// A send-only raw IPv4 socket (IPPROTO_RAW implies IP_HDRINCL): the caller writes the outer IPv4
// and UDP headers of each VXLAN datagram itself, so every flow can carry its own hashed UDP source
// port (as Linux's VXLAN does for ECMP entropy) while one socket sends them all with sendmmsg.
// The kernel fills the IPv4 checksum, the ID when it is 0, and the total length, then routes the
// packet like any other locally sent one. An IPPROTO_RAW socket receives nothing.
Napi::Value OpenRawIp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return ThrowErrno(env, "openRawIp()", errno);
  SetSockBuf(fd, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);
  return Napi::Number::New(env, fd);
}

// recvBatch(fd, buf, firstSlot, slotSize, headroom, maxFrames, lens, srcAddrs, srcPorts) -> count
// recvmmsg(2) with MSG_DONTWAIT, the iovecs pointing into the slots: one syscall per 64 datagrams
// (one syscall in total unless maxFrames > 64). Datagram i's sender goes to srcAddrs[i] (host-order
// u32) and srcPorts[i]. A datagram larger than its slot is cut by the kernel (MSG_TRUNC); its
// length is reported as -1 so that JS drops it rather than parse half a packet.
Napi::Value RecvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "recvBatch";
  int fd;
  uint8_t* buf;
  size_t bufLen;
  int32_t* lens;
  uint32_t* srcAddrs;
  uint16_t* srcPorts;
  size_t lensLen, addrsLen, portsLen;
  Slots s;
  if (!ArgFd(info, 0, fn, &fd) ||
      !ArgTyped(info, 1, fn, "buf", napi_uint8_array, "Uint8Array", &buf, &bufLen) ||
      !ArgSlots(info, 2, fn, bufLen, &s) ||
      !ArgTyped(info, 6, fn, "lens", napi_int32_array, "Int32Array", &lens, &lensLen) ||
      !ArgTyped(info, 7, fn, "srcAddrs", napi_uint32_array, "Uint32Array", &srcAddrs,
                &addrsLen) ||
      !ArgTyped(info, 8, fn, "srcPorts", napi_uint16_array, "Uint16Array", &srcPorts,
                &portsLen)) {
    return env.Undefined();
  }
  if (s.maxFrames > lensLen || s.maxFrames > addrsLen || s.maxFrames > portsLen) {
    return ThrowRange(env, "recvBatch: maxFrames (" + std::to_string(s.maxFrames) +
                               ") exceeds the length of lens, srcAddrs or srcPorts");
  }

  uint32_t n = 0;
  const size_t room = s.slotSize - s.headroom;
  while (n < s.maxFrames) {
    unsigned want = s.maxFrames - n < kBatch ? s.maxFrames - n : kBatch;
    for (unsigned j = 0; j < want; j++) {
      t_iovs[j].iov_base = buf + (static_cast<size_t>(s.firstSlot) + n + j) * s.slotSize +
                           s.headroom;
      t_iovs[j].iov_len = room;
      struct msghdr& h = t_msgs[j].msg_hdr;
      h.msg_name = &t_addrs[j];
      h.msg_namelen = sizeof t_addrs[j];  // in/out: reset every call
      h.msg_iov = &t_iovs[j];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
      t_msgs[j].msg_len = 0;
    }
    int r = recvmmsg(fd, t_msgs, want, MSG_DONTWAIT, nullptr);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (n == 0) return ThrowErrno(env, FdWhat(fn, fd), err);
      break;  // reported by the next call
    }
    for (int j = 0; j < r; j++) {
      const struct msghdr& h = t_msgs[j].msg_hdr;
      lens[n + j] = (h.msg_flags & MSG_TRUNC) ? -1 : static_cast<int32_t>(t_msgs[j].msg_len);
      if (h.msg_namelen >= sizeof(struct sockaddr_in) && t_addrs[j].sin_family == AF_INET) {
        srcAddrs[n + j] = ntohl(t_addrs[j].sin_addr.s_addr);
        srcPorts[n + j] = ntohs(t_addrs[j].sin_port);
      } else {
        srcAddrs[n + j] = 0;
        srcPorts[n + j] = 0;
      }
    }
    n += r;
    if (static_cast<unsigned>(r) < want) break;  // the queue is drained
  }
  return Napi::Number::New(env, n);
}

// sendBatch(fd, buf, offsets, lens, dstAddrs, dstPorts, start, count) -> datagrams consumed
// sendmmsg(2) with MSG_DONTWAIT in chunks of up to 64. Stops at EAGAIN (socket buffer full).
// sendmmsg reports a failure only for the first message of a call (-1 + errno); such a message
// (EMSGSIZE, ENETUNREACH, EINVAL for port 0, ...) is counted in sendErrors, skipped, and sending
// goes on. A datagram whose offset/length lies outside `buf` is counted and skipped likewise.
Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "sendBatch";
  int fd;
  uint8_t* buf;
  size_t bufLen;
  uint32_t *offsets, *lens, *dstAddrs;
  uint16_t* dstPorts;
  size_t offsetsLen, lensLen, addrsLen, portsLen;
  uint32_t start, count;
  if (!ArgFd(info, 0, fn, &fd) ||
      !ArgTyped(info, 1, fn, "buf", napi_uint8_array, "Uint8Array", &buf, &bufLen) ||
      !ArgTyped(info, 2, fn, "offsets", napi_uint32_array, "Uint32Array", &offsets, &offsetsLen) ||
      !ArgTyped(info, 3, fn, "lens", napi_uint32_array, "Uint32Array", &lens, &lensLen) ||
      !ArgTyped(info, 4, fn, "dstAddrs", napi_uint32_array, "Uint32Array", &dstAddrs,
                &addrsLen) ||
      !ArgTyped(info, 5, fn, "dstPorts", napi_uint16_array, "Uint16Array", &dstPorts,
                &portsLen)) {
    return env.Undefined();
  }
  size_t minLen = offsetsLen;
  if (lensLen < minLen) minLen = lensLen;
  if (addrsLen < minLen) minLen = addrsLen;
  if (portsLen < minLen) minLen = portsLen;
  if (!ArgRange(info, 6, fn, minLen, &start, &count)) return env.Undefined();

  uint32_t i = 0;  // datagrams consumed so far (always a prefix of the request)
  while (i < count) {
    // Gather the next run of in-bounds datagrams, at most kBatch. A bad one at the head is
    // dropped here; a bad one later ends the run and is dropped on the next round.
    unsigned k = 0;
    while (k < kBatch && i + k < count) {
      uint32_t idx = start + i + k;
      if (!InBounds(offsets[idx], lens[idx], bufLen)) break;
      t_iovs[k].iov_base = buf + offsets[idx];
      t_iovs[k].iov_len = lens[idx];
      t_addrs[k] = Sockaddr4(dstAddrs[idx], dstPorts[idx]);
      struct msghdr& h = t_msgs[k].msg_hdr;
      h.msg_name = &t_addrs[k];
      h.msg_namelen = sizeof t_addrs[k];
      h.msg_iov = &t_iovs[k];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
      t_msgs[k].msg_len = 0;
      k++;
    }
    if (k == 0) {  // the datagram at i is out of bounds
      g_sendErrors.fetch_add(1, std::memory_order_relaxed);
      i++;
      continue;
    }
    int r = sendmmsg(fd, t_msgs, k, MSG_DONTWAIT);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      g_sendErrors.fetch_add(1, std::memory_order_relaxed);  // the first message failed
      i++;
      continue;
    }
    // r < k: the kernel stopped at a message it could not send; the next round retries it and
    // gets its error (or EAGAIN).
    i += r;
  }
  return Napi::Number::New(env, i);
}

// ---------------------------------------------------------------------------------------------
// Offload: TAP offload flags, MTU polling, and VXLAN with super-frames (see offload.h)
// ---------------------------------------------------------------------------------------------
//
// The path of a TCP super-frame from a pod on this node to a pod on another:
//
//   pod A's TAP --readBatch--> [vnet hdr | 64 KiB frame] --JS pipeline (bridge, NAT, policy)-->
//   sendVxlanBatch: segment into MSS packets, VXLAN-wrap, ONE sendmsg(UDP_SEGMENT) per <= 64
//   ... underlay: the kernel cuts the send into datagrams (or the NIC does) ...
//   recvVxlanBatch: recvmmsg with UDP_GRO (one buffer = many datagrams), coalesce same-flow
//   segments back into [VXLAN | vnet hdr (TCPV4, NEEDS_CSUM) | 64 KiB frame] --JS pipeline-->
//   writeBatch to pod B's TAP
//
// So a 64 KiB TCP burst costs one JS crossing and about two syscalls per side, instead of ~45
// packets each crossing every layer.

// setOffload(fd, flags) -> 0 or errno
// ioctl(TUNSETOFFLOAD): tell a TAP (opened with vnetHdr) which offloads the reader handles. The
// kernel rejects a flag it does not know with EINVAL, so callers probe by trying sets of flags
// from the most to the least capable. Never throws for an OS error: probing is expected to fail.
Napi::Value SetOffload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint32_t flags;
  if (!ArgFd(info, 0, "setOffload", &fd) ||
      !ArgUint(info, 1, "setOffload", "flags", 4294967295.0, &flags)) {
    return env.Undefined();
  }
  // The argument is passed by value, not through a pointer (unlike most TUN ioctls).
  int rc = ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(flags));
  return Napi::Number::New(env, rc < 0 ? errno : 0);
}

// getIfMtu(name) -> MTU of interface `name` in the caller's network namespace
// ioctl(SIOCGIFMTU) on a throwaway datagram socket: a socket belongs to the namespace it was
// created in, so one is made per call (a few microseconds) rather than cached across setns.
Napi::Value GetIfMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return ThrowType(env, "getIfMtu: name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string what = "getIfMtu(" + name + ")";
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('\0') != std::string::npos) {
    return ThrowErrno(env, what, EINVAL, "not a valid interface name");
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return ThrowErrno(env, what, errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name.data(), name.size());
  int rc = ioctl(s, SIOCGIFMTU, &ifr);
  int err = errno;
  close(s);
  if (rc < 0) return ThrowErrno(env, what, err);
  return Napi::Number::New(env, ifr.ifr_mtu);
}

// enableUdpGro(fd) -> boolean
// setsockopt(UDP_GRO): let the kernel hand this socket several same-sized datagrams of one
// sender as one buffer, with the size in a cmsg (recvVxlanBatch splits them again). Without it,
// a GRO'd or locally sent UDP_SEGMENT skb is split by the kernel before queueing. recvVxlanBatch
// also turns it on by itself the first time it sees a socket.
Napi::Value EnableUdpGro(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "enableUdpGro", &fd)) return env.Undefined();
  int one = 1;
  return Napi::Boolean::New(env, setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0);
}

// UDP_SEGMENT is given up on, process-wide, once the kernel has shown it cannot do it (see
// SendSegments). openUdpSender sets it when the socket option does not even exist.
std::atomic<bool> g_udpSegmentOff{false};

// openUdpSender(addr, basePort, count) -> Int32Array of fds
// `count` non-blocking UDP sockets bound to addr:basePort .. addr:basePort+count-1 (basePort 0:
// kernel-chosen ports), each with a 4 MiB send buffer. They exist for source-port entropy: a
// VXLAN receiver (and every ECMP router and RSS NIC between) spreads load by the outer 4-tuple,
// so each inner flow should keep one outer source port and different flows should use different
// ones. sendVxlanBatch sends an inner flow from fds[hash % count]. Send-only by convention: the
// VXLAN receive socket (port 4789) is separate, opened with openUdp.
Napi::Value OpenUdpSender(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "openUdpSender";
  uint32_t addr, basePort, count;
  if (!ArgUint(info, 0, fn, "addr", 4294967295.0, &addr) ||
      !ArgUint(info, 1, fn, "basePort", 65535.0, &basePort) ||
      !ArgUint(info, 2, fn, "count", 1024.0, &count)) {
    return env.Undefined();
  }
  if (count == 0 || (basePort != 0 && basePort + count - 1 > 65535)) {
    return ThrowRange(env, std::string(fn) + ": need 1 <= count and basePort + count - 1 <= 65535");
  }
  Napi::Int32Array fds = Napi::Int32Array::New(env, count);
  for (uint32_t i = 0; i < count; i++) {
    uint32_t port = basePort == 0 ? 0 : basePort + i;
    int fd = BindUdp4(addr, port, false);
    if (fd < 0) {
      for (uint32_t j = 0; j < i; j++) close(fds[j]);
      return ThrowErrno(env, std::string(fn) + "(" + AddrPort(addr, port) + ")", -fd);
    }
    // Probe UDP_SEGMENT (Linux >= 4.18): reading the option fails with ENOPROTOOPT without it.
    int gso = 0;
    socklen_t gsoLen = sizeof gso;
    if (getsockopt(fd, SOL_UDP, UDP_SEGMENT, &gso, &gsoLen) < 0) g_udpSegmentOff.store(true);
    fds[i] = fd;
  }
  return fds;
}

// Counters of the super-frame paths (process-wide, added to once per call).
std::atomic<uint64_t> g_vxlanSegments{0};     // segments cut from super-frames and sent
std::atomic<uint64_t> g_vxlanGsoSends{0};     // sendmsg(UDP_SEGMENT) calls that succeeded
std::atomic<uint64_t> g_vxlanTunnelSends{0};    // super-frames handed whole to the kernel (tunnel TAP)
std::atomic<uint64_t> g_vxlanTunnelRecv{0};     // whole inner super-packets received
std::atomic<bool> g_tunnelOff{false};           // the kernel refused a tunnel write: stop trying
std::atomic<uint64_t> g_vxlanPlainGsoSends{0};       // runs of single datagrams sent as one
std::atomic<uint64_t> g_vxlanPlainGsoDatagrams{0};   // the datagrams in those runs
std::atomic<uint64_t> g_vxlanSuperFrames{0};  // super-frames built from received segments
std::atomic<uint64_t> g_vxlanCoalesced{0};    // received segments that went into them
std::atomic<uint64_t> g_vxlanCsumErrors{0};   // received inner IPv4/TCP with a bad checksum

// ---- sendVxlanBatch -------------------------------------------------------------------------

// UDP_SEGMENT limits: at most 64 segments per send (UDP_MAX_SEGMENTS; 128 on newer kernels), and
// one send is one UDP "datagram" to the IP layer, so at most 65535 - 20 - 8 bytes of payload.
constexpr uint32_t kMaxGsoSegs = 64;
constexpr uint32_t kMaxUdpPayload = 65535 - 20 - 8;
// One segment's headers: VXLAN + Ethernet + IP + TCP/UDP, with room to spare.
constexpr uint32_t kSegHdrStride = 160;
static_assert(kSegHdrStride >= podwire::kVxlanLen + podwire::kMaxSegHdr, "segment header room");

// Scratch for the segments of one send: the headers are built here, the payloads are NOT copied.
// Each segment is two iovecs, [headers in t_segHdrs][payload inside the JS buffer], so the kernel
// gathers a UDP_SEGMENT send straight from the caller's memory and a 64 KiB super-frame is copied
// exactly once, by the kernel (a contiguous scratch copy would add a 64 KiB memcpy per frame).
//
//   t_segIovs: [hdr 0][payload 0][hdr 1][payload 1] ... [hdr k-1][payload k-1]
//                 |                  |
//   t_segHdrs: [VXLAN|Eth|IP|TCP]  [VXLAN|Eth|IP|TCP] ...   (kSegHdrStride bytes apart)
thread_local uint8_t t_segHdrs[kMaxGsoSegs][kSegHdrStride];
thread_local struct iovec t_segIovs[kMaxGsoSegs * 2];

// Scratch for a sendmmsg batch of single datagrams: up to four iovecs per message,
// [VXLAN header][frame up to the checksum field][completed checksum][rest of the frame], so that a
// checksum is finished without writing into the caller's buffer (which JS may send again after an
// EAGAIN).
thread_local struct iovec t_plainIovs[kBatch][4];
thread_local uint8_t t_plainCsum[kBatch][2];
thread_local uint32_t t_plainEntry[kBatch];  // which entry each message belongs to

// sendmmsg(t_msgs[0, k)) on fd until all are handled or the socket is full. A message the kernel
// refuses (sendmmsg reports only the first failure of a call) is counted in *errors and skipped.
// Returns how many messages were handled (k unless EAGAIN), and how many were sent in *sent.
unsigned SendAllMmsg(int fd, unsigned k, uint64_t* errors, unsigned* sent) {
  unsigned done = 0;
  *sent = 0;
  while (done < k) {
    int r = sendmmsg(fd, t_msgs + done, k - done, MSG_DONTWAIT);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      (*errors)++;
      done++;
      continue;
    }
    done += r;
    *sent += r;
  }
  return done;
}

// Per-call state of sendVxlanBatch.
struct VxlanTx {
  const int32_t* fds;
  uint32_t nfds;
  uint8_t vxlan[podwire::kVxlanLen];
  uint16_t dstPort;
  // The pending sendmmsg batch of single datagrams, all for socket batchFd.
  unsigned k = 0;
  int batchFd = -1;
  // Tallies, added to the global counters at the end of the call.
  uint64_t errors = 0, segments = 0, gsoSends = 0, plainGsoSends = 0, plainGsoDatagrams = 0;
  uint64_t tunnelSends = 0;
  // The UDP-tunnel GSO path: a TAP to write whole VXLAN super-frames to (-1: none), this node's
  // underlay address and the TAP's MAC (the outer Ethernet destination).
  int tunnelFd = -1;
  uint32_t srcAddr = 0;
  uint8_t tapMac[6];
};

// Scratch for one tunnel write: [virtio_net_hdr_v1_hash_tunnel][outer Eth|IPv4|UDP|VXLAN].
thread_local uint8_t t_tunnelHdr[podwire::kVnetTunnelLen + podwire::kOuterLen];
thread_local uint16_t t_tunnelIpId = 0;

// Write one TCPV4 super-frame whole to the tunnel TAP (see offload.h). Returns false if the frame
// does not qualify (outer packet > 64 KiB, odd headers) or the kernel refused it (then the path is
// given up for the process); the caller then segments it itself.
bool SendTunnel(VxlanTx* tx, const podwire::VnetView& vh, const uint8_t* frame, uint32_t flen,
                uint32_t dstAddr, uint32_t hash) {
  // Outer source port from the inner flow's hash, in the ephemeral range, as Linux picks it.
  const uint16_t srcPort = static_cast<uint16_t>(49152 + (hash & 0x3fff));
  if (!podwire::BuildTunnelHeader(t_tunnelHdr + 0, vh, frame, flen, tx->vxlan, tx->tapMac,
                                  tx->srcAddr, dstAddr, srcPort, tx->dstPort, t_tunnelIpId++)) {
    return false;
  }
  struct iovec iov[2];
  iov[0].iov_base = t_tunnelHdr;
  iov[0].iov_len = sizeof t_tunnelHdr;
  iov[1].iov_base = const_cast<uint8_t*>(frame);
  iov[1].iov_len = flen;
  ssize_t r;
  do {
    r = writev(tx->tunnelFd, iov, 2);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    g_tunnelOff.store(true, std::memory_order_relaxed);
    return false;
  }
  tx->tunnelSends++;
  return true;
}

void SetMsg(unsigned j, struct iovec* iov, size_t iovlen, struct sockaddr_in* dst) {
  struct msghdr& h = t_msgs[j].msg_hdr;
  h.msg_name = dst;
  h.msg_namelen = sizeof *dst;
  h.msg_iov = iov;
  h.msg_iovlen = iovlen;
  h.msg_control = nullptr;
  h.msg_controllen = 0;
  h.msg_flags = 0;
  t_msgs[j].msg_len = 0;
}

// The pending single datagrams leave in as few sends as the kernel allows. Consecutive datagrams
// for one destination with the same length (the last of a run may be shorter) form a run, and a
// run of two or more is ONE message with a UDP_SEGMENT cmsg: the kernel carries it as one skb
// through the stack (veth, bridge, and into a peer socket that has UDP_GRO) and cuts it into the
// original datagrams only where it must (a real NIC, a socket without UDP_GRO). The wire sees the
// same datagrams as with one send each. All runs of a flush share one sendmmsg.
//
//   pending:  [d0 90 B][d1 90 B][d2 90 B][d3 60 B][d4 90 B]    (one socket, same destination)
//   messages: [ run d0..d3, UDP_SEGMENT 90 ][ d4 alone ]
thread_local struct mmsghdr t_runMsgs[kBatch];
thread_local struct iovec t_runIovs[kBatch * 4];
alignas(struct cmsghdr) thread_local uint8_t t_runCtrl[kBatch][CMSG_SPACE(sizeof(uint16_t))];
thread_local uint32_t t_plainLen[kBatch];   // datagram length of pending message j
thread_local unsigned t_runFirst[kBatch];   // first pending message of run m
thread_local unsigned t_runCount[kBatch];   // pending messages in run m

// Group t_msgs[0, k) into runs in t_runMsgs; returns the number of runs.
unsigned BuildRuns(unsigned k) {
  unsigned m = 0, iovAt = 0;
  for (unsigned j = 0; j < k;) {
    const unsigned first = j;
    const uint32_t size = t_plainLen[j];
    const uint32_t dst = t_addrs[j].sin_addr.s_addr;
    uint32_t total = size;
    j++;
    while (j < k && j - first < kMaxGsoSegs && t_addrs[j].sin_addr.s_addr == dst &&
           t_plainLen[j] <= size && total + t_plainLen[j] <= kMaxUdpPayload) {
      total += t_plainLen[j];
      if (t_plainLen[j++] < size) break;  // a shorter datagram can only end a run
    }
    struct msghdr& h = t_runMsgs[m].msg_hdr;
    h = t_msgs[first].msg_hdr;  // destination, and the iovecs of a run of one
    t_runMsgs[m].msg_len = 0;
    if (j - first > 1) {
      h.msg_iov = &t_runIovs[iovAt];
      h.msg_iovlen = 0;
      for (unsigned d = first; d < j; d++) {
        const struct msghdr& one = t_msgs[d].msg_hdr;
        for (size_t v = 0; v < one.msg_iovlen; v++) t_runIovs[iovAt++] = one.msg_iov[v];
        h.msg_iovlen += one.msg_iovlen;
      }
      memset(t_runCtrl[m], 0, sizeof t_runCtrl[m]);
      h.msg_control = t_runCtrl[m];
      h.msg_controllen = sizeof t_runCtrl[m];
      struct cmsghdr* cm = CMSG_FIRSTHDR(&h);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t gsoSize = static_cast<uint16_t>(size);
      memcpy(CMSG_DATA(cm), &gsoSize, sizeof gsoSize);
    }
    t_runFirst[m] = first;
    t_runCount[m] = j - first;
    m++;
  }
  return m;
}

// Send the pending batch. Returns false if the socket filled up: *stopAt is then the first entry
// not consumed.
bool FlushPlain(VxlanTx* tx, uint32_t* stopAt) {
  if (tx->k == 0) return true;
  const unsigned k = tx->k;
  tx->k = 0;
  unsigned sent;
  if (k == 1 || g_udpSegmentOff.load(std::memory_order_relaxed)) {
    unsigned done = SendAllMmsg(tx->batchFd, k, &tx->errors, &sent);
    if (done == k) return true;
    *stopAt = t_plainEntry[done];
    return false;
  }
  const unsigned runs = BuildRuns(k);
  unsigned m = 0;
  while (m < runs) {
    int r = sendmmsg(tx->batchFd, t_runMsgs + m, runs - m, MSG_DONTWAIT);
    if (r > 0) {
      for (int d = 0; d < r; d++) {
        if (t_runCount[m + d] > 1) {
          tx->plainGsoSends++;
          tx->plainGsoDatagrams += t_runCount[m + d];
        }
      }
      m += r;
      continue;
    }
    int err = errno;
    if (r < 0 && err == EINTR) continue;
    if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
      *stopAt = t_plainEntry[t_runFirst[m]];
      return false;
    }
    // Message m was refused. A run the kernel would not segment (a datagram larger than the
    // route's MTU: EMSGSIZE/EINVAL; no UDP_SEGMENT here: EIO/ENOPROTOOPT/EOPNOTSUPP) goes out one
    // datagram at a time, as SendSegments does; anything else loses the run's datagrams.
    const unsigned first = t_runFirst[m], n = t_runCount[m];
    if (n > 1 && (err == EMSGSIZE || err == EINVAL || err == EIO || err == ENOPROTOOPT ||
                  err == EOPNOTSUPP)) {
      if (err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP) {
        g_udpSegmentOff.store(true, std::memory_order_relaxed);
      }
      // t_msgs[first, first + n) are the run's single messages; SendAllMmsg sends from t_msgs.
      if (first > 0) memmove(t_msgs, t_msgs + first, n * sizeof t_msgs[0]);
      unsigned done = SendAllMmsg(tx->batchFd, n, &tx->errors, &sent);
      if (done < n) {
        *stopAt = t_plainEntry[first + done];
        return false;
      }
    } else {
      tx->errors += n;
    }
    m++;
  }
  return true;
}

// Segment one super-frame and send it from fd to dst. Returns false on EAGAIN (the entry is then
// not consumed, even if some of its chunks went out: JS sends it again later and the receiver
// sees duplicates, which TCP shrugs off, rather than a hole, which costs it a retransmission).
bool SendSegments(VxlanTx* tx, const podwire::SegPlan& p, int fd, struct sockaddr_in* dst) {
  const uint32_t full = podwire::kVxlanLen + p.hl + p.mss;  // a full datagram (the gso_size)
  uint32_t perSend = kMaxUdpPayload / full;
  if (perSend > kMaxGsoSegs) perSend = kMaxGsoSegs;
  for (uint32_t first = 0; first < p.nseg; first += perSend) {
    const unsigned k = p.nseg - first < perSend ? p.nseg - first : perSend;
    for (unsigned j = 0; j < k; j++) {
      uint8_t* h = t_segHdrs[j];
      memcpy(h, tx->vxlan, podwire::kVxlanLen);
      uint32_t payOff;
      uint32_t plen = podwire::BuildSegment(p, first + j, h + podwire::kVxlanLen, &payOff);
      t_segIovs[2 * j].iov_base = h;
      t_segIovs[2 * j].iov_len = podwire::kVxlanLen + p.hl;
      t_segIovs[2 * j + 1].iov_base = const_cast<uint8_t*>(p.frame + payOff);
      t_segIovs[2 * j + 1].iov_len = plen;
    }
    int gsoErr = 0;
    if (k > 1 && !g_udpSegmentOff.load(std::memory_order_relaxed)) {
      // One sendmsg, the kernel cutting it every `full` bytes (the last piece may be shorter).
      alignas(struct cmsghdr) uint8_t ctrl[CMSG_SPACE(sizeof(uint16_t))];
      memset(ctrl, 0, sizeof ctrl);
      struct msghdr h;
      memset(&h, 0, sizeof h);
      h.msg_name = dst;
      h.msg_namelen = sizeof *dst;
      h.msg_iov = t_segIovs;
      h.msg_iovlen = 2 * k;
      h.msg_control = ctrl;
      h.msg_controllen = sizeof ctrl;
      struct cmsghdr* cm = CMSG_FIRSTHDR(&h);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gsoSize = static_cast<uint16_t>(full);
      memcpy(CMSG_DATA(cm), &gsoSize, sizeof gsoSize);
      ssize_t r;
      do {
        r = sendmsg(fd, &h, MSG_DONTWAIT);
      } while (r < 0 && errno == EINTR);
      if (r >= 0) {
        tx->gsoSends++;
        tx->segments += k;
        continue;
      }
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return false;
      if (err != EIO && err != EINVAL && err != EMSGSIZE && err != ENOPROTOOPT &&
          err != EOPNOTSUPP) {
        tx->errors += k;  // ENETUNREACH, EPERM, ...: these datagrams are lost
        continue;
      }
      gsoErr = err;  // the kernel would not segment: send them one by one below
    }
    for (unsigned j = 0; j < k; j++) SetMsg(j, &t_segIovs[2 * j], 2, dst);
    unsigned sent;
    if (SendAllMmsg(fd, k, &tx->errors, &sent) < k) return false;
    tx->segments += sent;
    // Which failures are remembered. EIO: the route cannot do it (no checksum offload on the
    // way out, an IPsec transform); ENOPROTOOPT/EOPNOTSUPP: the kernel does not know the cmsg.
    // Those will not get better, so UDP_SEGMENT is given up for the process. EMSGSIZE (Linux
    // >= 6.10) or EINVAL (before) is NOT remembered: on a kernel that passed openUdpSender's probe
    // it means a segment larger than this route's MTU (the only other causes, > 64 segments or
    // SO_NO_CHECK, cannot happen here), a property of one destination and of a moment (JS polls
    // the MTU). The single sends just made went out as IP fragments (a UDP socket's default,
    // IP_PMTUDISC_WANT, lets the kernel fragment), or were refused and counted.
    if (gsoErr == EIO || gsoErr == ENOPROTOOPT || gsoErr == EOPNOTSUPP) {
      g_udpSegmentOff.store(true, std::memory_order_relaxed);
    }
  }
  return true;
}

// sendVxlanBatch(fds, buf, offsets, lens, dstAddrs, hashes, start, count, vni, dstPort)
//   -> entries consumed
//
// Entry i (for i in [start, start + count)) is buf[offsets[i], + lens[i]):
//
//   [ virtio_net_hdr_v1 (12) ][ inner Ethernet frame ]
//
// and goes to dstAddrs[i]:dstPort from socket fds[hashes[i] % fds.length], each datagram being
// [ VXLAN header: 0x08 0 0 0 | VNI (24 bits) | 0 ][ inner packet ]. By gso_type:
//   * TCPV4, TCPV6, UDP_L4: segmented (offload.h: BuildSegment), sent with one sendmsg with a
//     UDP_SEGMENT cmsg per <= 64 segments (sendmmsg of single datagrams when UDP_SEGMENT fails:
//     see SendSegments for which failures are remembered).
//   * NONE: one datagram; with NEEDS_CSUM its checksum is completed first. Consecutive such
//     entries for one socket share a sendmmsg.
//   * anything else (UFO), malformed frames, offsets outside buf: counted in sendErrors, consumed.
// `buf` is only read. Stops at EAGAIN; returns how many entries were consumed (sent or dropped).
Napi::Value SendVxlanBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "sendVxlanBatch";
  int32_t* fds;
  uint8_t* buf;
  uint32_t *offsets, *lens, *dstAddrs, *hashes;
  size_t fdsLen, bufLen, offsetsLen, lensLen, addrsLen, hashesLen;
  uint32_t start, count, vni, dstPort;
  if (!ArgTyped(info, 0, fn, "fds", napi_int32_array, "Int32Array", &fds, &fdsLen) ||
      !ArgTyped(info, 1, fn, "buf", napi_uint8_array, "Uint8Array", &buf, &bufLen) ||
      !ArgTyped(info, 2, fn, "offsets", napi_uint32_array, "Uint32Array", &offsets, &offsetsLen) ||
      !ArgTyped(info, 3, fn, "lens", napi_uint32_array, "Uint32Array", &lens, &lensLen) ||
      !ArgTyped(info, 4, fn, "dstAddrs", napi_uint32_array, "Uint32Array", &dstAddrs,
                &addrsLen) ||
      !ArgTyped(info, 5, fn, "hashes", napi_uint32_array, "Uint32Array", &hashes, &hashesLen)) {
    return env.Undefined();
  }
  size_t minLen = offsetsLen;
  if (lensLen < minLen) minLen = lensLen;
  if (addrsLen < minLen) minLen = addrsLen;
  if (hashesLen < minLen) minLen = hashesLen;
  if (!ArgRange(info, 6, fn, minLen, &start, &count) ||
      !ArgUint(info, 8, fn, "vni", 16777215.0, &vni) ||
      !ArgUint(info, 9, fn, "dstPort", 65535.0, &dstPort)) {
    return env.Undefined();
  }
  VxlanTx tx;
  if (info.Length() > 10 && !info[10].IsUndefined() &&
      !(info[10].IsNumber() && info[10].As<Napi::Number>().DoubleValue() == -1)) {
    // Optional: tunnelFd (-1: none), srcAddr, tapMac (Uint8Array of 6) for the UDP-tunnel GSO path.
    uint8_t* mac;
    size_t macLen;
    uint32_t tfd;
    if (!ArgUint(info, 10, fn, "tunnelFd", 2147483647.0, &tfd) ||
        !ArgUint(info, 11, fn, "srcAddr", 4294967295.0, &tx.srcAddr) ||
        !ArgTyped(info, 12, fn, "tapMac", napi_uint8_array, "Uint8Array", &mac, &macLen)) {
      return env.Undefined();
    }
    if (macLen != 6) return ThrowRange(env, "sendVxlanBatch: tapMac must hold 6 bytes");
    memcpy(tx.tapMac, mac, 6);
    tx.tunnelFd = static_cast<int>(tfd);
  }
  if (fdsLen == 0) return ThrowRange(env, "sendVxlanBatch: fds is empty");
  for (size_t j = 0; j < fdsLen; j++) {
    if (fds[j] < 0) return ThrowRange(env, "sendVxlanBatch: fds holds a negative fd");
  }

  tx.fds = fds;
  tx.nfds = static_cast<uint32_t>(fdsLen);
  tx.dstPort = static_cast<uint16_t>(dstPort);
  const uint8_t vx[podwire::kVxlanLen] = {0x08, 0, 0, 0, static_cast<uint8_t>(vni >> 16),
                                         static_cast<uint8_t>(vni >> 8),
                                         static_cast<uint8_t>(vni), 0};
  memcpy(tx.vxlan, vx, sizeof vx);

  uint32_t stopAt = count;  // first entry not consumed, if we stop early
  bool stopped = false;
  uint32_t i = 0;
  for (; i < count && !stopped; i++) {
    const uint32_t idx = start + i;
    const uint32_t off = offsets[idx], len = lens[idx];
    if (!InBounds(off, len, bufLen) || len < podwire::kVnetLen + podwire::kEthLen) {
      // Send what is batched first, so that an EAGAIN there cannot make us count this twice.
      if (!FlushPlain(&tx, &stopAt)) {
        stopped = true;
        break;
      }
      tx.errors++;
      continue;
    }
    const uint8_t* entry = buf + off;
    const podwire::VnetView vh = podwire::ReadVnet(entry);
    const uint8_t* frame = entry + podwire::kVnetLen;
    const uint32_t flen = len - podwire::kVnetLen;
    const int fd = fds[hashes[idx] % tx.nfds];
    const uint8_t gsoType = vh.gsoType & static_cast<uint8_t>(~podwire::kGsoEcn);

    if (gsoType == podwire::kGsoNone) {
      // A single datagram, which may join the pending sendmmsg batch.
      uint32_t csumAt = 0;
      if (vh.flags & podwire::kVnetFNeedsCsum) {
        csumAt = static_cast<uint32_t>(vh.csumStart) + vh.csumOffset;
        if (csumAt + 2 > flen) {
          if (!FlushPlain(&tx, &stopAt)) {
            stopped = true;
            break;
          }
          tx.errors++;
          continue;
        }
      }
      if (tx.k == kBatch || (tx.k > 0 && fd != tx.batchFd)) {
        if (!FlushPlain(&tx, &stopAt)) {
          stopped = true;
          break;
        }
      }
      const unsigned j = tx.k;
      struct iovec* iov = t_plainIovs[j];
      iov[0].iov_base = tx.vxlan;
      iov[0].iov_len = podwire::kVxlanLen;
      size_t niov;
      if (vh.flags & podwire::kVnetFNeedsCsum) {
        podwire::StoreHost16(t_plainCsum[j], podwire::CompleteCsum(frame, flen, vh.csumStart));
        iov[1].iov_base = const_cast<uint8_t*>(frame);
        iov[1].iov_len = csumAt;
        iov[2].iov_base = t_plainCsum[j];
        iov[2].iov_len = 2;
        iov[3].iov_base = const_cast<uint8_t*>(frame + csumAt + 2);
        iov[3].iov_len = flen - csumAt - 2;
        niov = 4;
      } else {
        iov[1].iov_base = const_cast<uint8_t*>(frame);
        iov[1].iov_len = flen;
        niov = 2;
      }
      t_addrs[j] = Sockaddr4(dstAddrs[idx], tx.dstPort);
      SetMsg(j, iov, niov, &t_addrs[j]);
      t_plainLen[j] = podwire::kVxlanLen + flen;
      t_plainEntry[j] = i;
      tx.batchFd = fd;
      tx.k++;
      continue;
    }

    // A super-frame: keep the order of the wire by sending what is batched first.
    if (!FlushPlain(&tx, &stopAt)) {
      stopped = true;
      break;
    }
    if (tx.tunnelFd >= 0 && (gsoType == podwire::kGsoTcpV4) &&
        (vh.flags & podwire::kVnetFNeedsCsum) && !g_tunnelOff.load(std::memory_order_relaxed) &&
        SendTunnel(&tx, vh, frame, flen, dstAddrs[idx], hashes[idx])) {
      continue;
    }
    podwire::SegPlan plan;
    if (!podwire::PlanSegments(frame, flen, gsoType, vh.gsoSize, &plan) ||
        podwire::kVxlanLen + plan.hl + (plan.nseg > 1 ? plan.mss : plan.pay) > kMaxUdpPayload) {
      tx.errors++;
      continue;
    }
    struct sockaddr_in dst = Sockaddr4(dstAddrs[idx], tx.dstPort);
    if (!SendSegments(&tx, plan, fd, &dst)) {
      stopAt = i;
      stopped = true;
      break;
    }
  }
  if (!stopped && !FlushPlain(&tx, &stopAt)) stopped = true;

  g_sendErrors.fetch_add(tx.errors, std::memory_order_relaxed);
  g_vxlanSegments.fetch_add(tx.segments, std::memory_order_relaxed);
  g_vxlanGsoSends.fetch_add(tx.gsoSends, std::memory_order_relaxed);
  g_vxlanTunnelSends.fetch_add(tx.tunnelSends, std::memory_order_relaxed);
  g_vxlanPlainGsoSends.fetch_add(tx.plainGsoSends, std::memory_order_relaxed);
  g_vxlanPlainGsoDatagrams.fetch_add(tx.plainGsoDatagrams, std::memory_order_relaxed);
  return Napi::Number::New(env, stopped ? stopAt : count);
}

// ---- recvVxlanBatch -------------------------------------------------------------------------
//
// Datagrams are received into per-thread, per-socket scratch buffers of 64 KiB, one per
// recvmmsg message, because with UDP_GRO one message may hold up to 64 datagrams:
//
//   buffer j (len[j] bytes, gso[j] from the UDP_GRO cmsg):
//     [ datagram 0: gso bytes ][ datagram 1: gso bytes ] ... [ last: <= gso bytes ]
//
// and are then copied out, one inner frame per JS slot, coalescing TCP segments on the way:
//
//   slot: [ headroom ][ VXLAN header 8 ][ virtio_net_hdr_v1 12 ][ inner Ethernet frame ]
//                     '-------------------- lens[i] = 8 + 12 + frame length -----------'
//
// Because one buffer can yield more frames than the caller has slots, datagrams that did not fit
// stay in the scratch ("pending") until the next call on the same fd. The fd may then no longer
// be readable although frames wait here: a caller must call again whenever a call returned
// maxFrames (as with any batch read that filled its batch), before waiting for readability.

constexpr unsigned kRecvBufs = 64;
constexpr uint32_t kRecvBufSize = 65536;  // a UDP payload (GRO'd or not) is below 64 KiB
constexpr unsigned kMaxRecvCtx = 8;       // receive sockets one thread may use at a time

struct RecvCtx {
  int fd = -1;
  std::unique_ptr<uint8_t[]> mem{new uint8_t[static_cast<size_t>(kRecvBufs) * kRecvBufSize]};
  struct mmsghdr msgs[kRecvBufs];
  struct iovec iovs[kRecvBufs];
  struct sockaddr_in addrs[kRecvBufs];
  alignas(struct cmsghdr) uint8_t ctrl[kRecvBufs][CMSG_SPACE(sizeof(int))];
  // What the last recvmmsg returned: buffers [cur, n) are not yet handed out, and the next
  // datagram starts at offset `off` of buffer `cur`.
  unsigned n = 0, cur = 0;
  uint32_t off = 0;
  uint32_t len[kRecvBufs];
  uint16_t gso[kRecvBufs];   // 0: the buffer is one datagram
  bool trunc[kRecvBufs];
  uint32_t src[kRecvBufs];
  uint16_t sport[kRecvBufs];

  bool Pending() const { return cur < n; }
};

thread_local std::unique_ptr<RecvCtx> t_recv[kMaxRecvCtx];

// The context for fd: its own, else one holding nothing (reused; 4 MiB each), else a new one.
// nullptr when every context holds another socket's pending datagrams.
RecvCtx* RecvContext(int fd) {
  RecvCtx* idle = nullptr;
  for (auto& c : t_recv) {
    if (c && c->fd == fd) return c.get();
  }
  for (auto& c : t_recv) {
    if (c && !c->Pending()) {
      idle = c.get();
      break;
    }
  }
  if (idle == nullptr) {
    for (auto& c : t_recv) {
      if (!c) {
        c.reset(new RecvCtx());
        idle = c.get();
        break;
      }
    }
  }
  if (idle == nullptr) return nullptr;
  idle->fd = fd;
  idle->n = idle->cur = 0;
  idle->off = 0;
  int one = 1;
  (void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);  // best effort; see enableUdpGro
  return idle;
}

// closeFd forgets the fd's pending datagrams (on this thread), so that a new socket that reuses
// the number does not receive them.
void ForgetRecvContext(int fd) {
  for (auto& c : t_recv) {
    if (c && c->fd == fd) {
      c->fd = -1;
      c->n = c->cur = 0;
      c->off = 0;
    }
  }
}

// recvVxlanBatch(fd, buf, firstSlot, slotSize, headroom, maxFrames, lens, srcAddrs[, innerMtu])
//   -> slots used
// See the layout above. lens[i] is 8 + 12 + the inner frame's length, or -1 for a datagram that
// was dropped (longer than the slot, truncated, or too short to hold VXLAN + Ethernet); srcAddrs[i]
// is the underlay sender (host-order IPv4). The vnet header says:
//   * {NEEDS_CSUM, TCPV4, hdr_len, gso_size, csum_start, csum_offset 16}: a coalesced super-frame,
//     or (with innerMtu) a datagram that carried one whole TCP super-packet, gso_size then being
//     the MSS innerMtu allows;
//   * {DATA_VALID}: an IPv4/TCP segment passed alone whose checksums were verified;
//   * all zero: anything else, including a TCP segment whose checksum is wrong.
Napi::Value RecvVxlanBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "recvVxlanBatch";
  int fd;
  uint8_t* buf;
  size_t bufLen;
  int32_t* lens;
  uint32_t* srcAddrs;
  size_t lensLen, addrsLen;
  Slots s;
  if (!ArgFd(info, 0, fn, &fd) ||
      !ArgTyped(info, 1, fn, "buf", napi_uint8_array, "Uint8Array", &buf, &bufLen) ||
      !ArgSlots(info, 2, fn, bufLen, &s) ||
      !ArgTyped(info, 6, fn, "lens", napi_int32_array, "Int32Array", &lens, &lensLen) ||
      !ArgTyped(info, 7, fn, "srcAddrs", napi_uint32_array, "Uint32Array", &srcAddrs,
                &addrsLen)) {
    return env.Undefined();
  }
  uint32_t innerMtu = 0;  // optional: the most one inner packet may carry (see InspectTcp4Super)
  if (info.Length() > 8 && !info[8].IsUndefined() && !ArgUint(info, 8, fn, "innerMtu", 65535.0, &innerMtu)) {
    return env.Undefined();
  }
  if (s.maxFrames > lensLen || s.maxFrames > addrsLen) {
    return ThrowRange(env, "recvVxlanBatch: maxFrames (" + std::to_string(s.maxFrames) +
                               ") exceeds the length of lens or srcAddrs");
  }
  RecvCtx* ctx = RecvContext(fd);
  if (ctx == nullptr) {
    return ThrowErrno(env, FdWhat(fn, fd), EBUSY,
                      "more than 8 receive sockets hold pending datagrams on this thread");
  }

  using podwire::kVnetLen;
  using podwire::kVxlanLen;
  const uint32_t room = s.slotSize - s.headroom;  // for VXLAN + vnet + frame
  const uint32_t frameRoom = room > kVxlanLen + kVnetLen ? room - kVxlanLen - kVnetLen : 0;
  uint32_t produced = 0;
  bool drained = false;  // recvmmsg returned less than asked: do not ask again in this call
  podwire::Run run;
  bool runOpen = false;
  uint32_t runSlot = 0;
  uint64_t superFrames = 0, coalesced = 0, csumErrors = 0, tunnelRecv = 0;

  auto finishRun = [&]() {
    uint32_t flen = podwire::RunFinish(run);
    lens[runSlot] = static_cast<int32_t>(kVxlanLen + kVnetLen + flen);
    if (run.count > 1) {
      superFrames++;
      coalesced += run.count;
    }
    runOpen = false;
  };

  for (;;) {
    if (!ctx->Pending()) {
      if (drained || produced >= s.maxFrames) break;
      // Each buffer yields at least one slot, so never ask for more buffers than free slots.
      unsigned want = s.maxFrames - produced < kRecvBufs ? s.maxFrames - produced : kRecvBufs;
      for (unsigned j = 0; j < want; j++) {
        ctx->iovs[j].iov_base = ctx->mem.get() + static_cast<size_t>(j) * kRecvBufSize;
        ctx->iovs[j].iov_len = kRecvBufSize;
        struct msghdr& h = ctx->msgs[j].msg_hdr;
        h.msg_name = &ctx->addrs[j];
        h.msg_namelen = sizeof ctx->addrs[j];
        h.msg_iov = &ctx->iovs[j];
        h.msg_iovlen = 1;
        h.msg_control = ctx->ctrl[j];
        h.msg_controllen = sizeof ctx->ctrl[j];
        h.msg_flags = 0;
        ctx->msgs[j].msg_len = 0;
      }
      int r = recvmmsg(fd, ctx->msgs, want, MSG_DONTWAIT, nullptr);
      if (r < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) break;
        if (produced == 0 && !runOpen) return ThrowErrno(env, FdWhat(fn, fd), err);
        break;  // reported by the next call
      }
      for (int j = 0; j < r; j++) {
        struct msghdr& h = ctx->msgs[j].msg_hdr;
        ctx->len[j] = ctx->msgs[j].msg_len;
        ctx->trunc[j] = (h.msg_flags & MSG_TRUNC) != 0;
        ctx->gso[j] = 0;
        for (struct cmsghdr* cm = CMSG_FIRSTHDR(&h); cm != nullptr; cm = CMSG_NXTHDR(&h, cm)) {
          if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO &&
              cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int g;
            memcpy(&g, CMSG_DATA(cm), sizeof g);
            if (g > 0 && g < static_cast<int>(kRecvBufSize)) ctx->gso[j] = static_cast<uint16_t>(g);
          }
        }
        if (h.msg_namelen >= sizeof(struct sockaddr_in) && ctx->addrs[j].sin_family == AF_INET) {
          ctx->src[j] = ntohl(ctx->addrs[j].sin_addr.s_addr);
          ctx->sport[j] = ntohs(ctx->addrs[j].sin_port);
        } else {
          ctx->src[j] = 0;
          ctx->sport[j] = 0;
        }
      }
      ctx->n = static_cast<unsigned>(r);
      ctx->cur = 0;
      ctx->off = 0;
      if (static_cast<unsigned>(r) < want) drained = true;
      continue;
    }

    // The next datagram: d[0, dlen) from src:sport.
    const unsigned j = ctx->cur;
    const uint8_t* d = ctx->mem.get() + static_cast<size_t>(j) * kRecvBufSize + ctx->off;
    uint32_t dlen = ctx->len[j] - ctx->off;
    if (ctx->gso[j] != 0 && !ctx->trunc[j] && dlen > ctx->gso[j]) dlen = ctx->gso[j];
    const uint32_t src = ctx->src[j];
    const uint16_t sport = ctx->sport[j];
    const bool bad = ctx->trunc[j] || dlen < kVxlanLen + podwire::kEthLen;
    const uint8_t* inner = d + kVxlanLen;
    const uint32_t innerLen = bad ? 0 : dlen - kVxlanLen;
    // A whole inner super-packet (the sender's kernel did not cut it: the UDP-tunnel GSO path)
    // goes to its own slot as a super-frame, its checksum still to be completed (NEEDS_CSUM).
    uint16_t superGso = 0, superCsumStart = 0, superHdrLen = 0;
    if (!bad && ctx->gso[j] == 0 && innerLen <= frameRoom &&
        podwire::InspectTcp4Super(inner, innerLen, innerMtu, &superGso, &superCsumStart, &superHdrLen)) {
      if (runOpen) finishRun();
      if (produced >= s.maxFrames) break;
      uint8_t* slot = buf + (static_cast<size_t>(s.firstSlot) + produced) * s.slotSize + s.headroom;
      srcAddrs[produced] = src;
      memcpy(slot, d, kVxlanLen);
      memcpy(slot + kVxlanLen + kVnetLen, inner, innerLen);
      podwire::WriteVnet(slot + kVxlanLen, podwire::kVnetFNeedsCsum, podwire::kGsoTcpV4,
                         superHdrLen, superGso, superCsumStart, 16);
      lens[produced] = static_cast<int32_t>(kVxlanLen + kVnetLen + innerLen);
      produced++;
      tunnelRecv++;
      ctx->cur++;
      ctx->off = 0;
      continue;
    }
    podwire::TcpSeg seg;
    const bool tcp = !bad && podwire::InspectTcp4(inner, innerLen, &seg);
    if (tcp && !seg.csumOk) csumErrors++;

    bool joined = false;
    if (runOpen) {
      if (tcp && podwire::RunCanJoin(run, d, inner, seg, src, sport)) {
        podwire::RunJoin(&run, inner, seg);
        joined = true;
      } else {
        finishRun();
      }
    }
    if (!joined) {
      if (produced >= s.maxFrames) {
        // No slot left for this datagram: it stays pending, and its checksum error (if any) is
        // counted when it is handed out.
        if (tcp && !seg.csumOk) csumErrors--;
        break;
      }
      uint8_t* slot = buf + (static_cast<size_t>(s.firstSlot) + produced) * s.slotSize +
                      s.headroom;
      srcAddrs[produced] = src;
      if (bad || innerLen > frameRoom) {
        lens[produced] = -1;
      } else {
        memcpy(slot, d, kVxlanLen);
        memcpy(slot + kVxlanLen + kVnetLen, inner, innerLen);
        if (tcp && seg.mergeable) {
          podwire::RunStart(&run, slot, frameRoom, seg, src, sport);
          runOpen = true;
          runSlot = produced;
        } else {
          podwire::WriteVnet(slot + kVxlanLen, tcp && seg.csumOk ? podwire::kVnetFDataValid : 0,
                             podwire::kGsoNone, 0, 0, 0, 0);
          lens[produced] = static_cast<int32_t>(kVxlanLen + kVnetLen + innerLen);
        }
      }
      produced++;
    }
    // Step past the datagram.
    if (ctx->trunc[j] || ctx->off + dlen >= ctx->len[j]) {
      ctx->cur++;
      ctx->off = 0;
    } else {
      ctx->off += dlen;
    }
  }
  if (runOpen) finishRun();

  g_vxlanSuperFrames.fetch_add(superFrames, std::memory_order_relaxed);
  g_vxlanCoalesced.fetch_add(coalesced, std::memory_order_relaxed);
  g_vxlanCsumErrors.fetch_add(csumErrors, std::memory_order_relaxed);
  g_vxlanTunnelRecv.fetch_add(tunnelRecv, std::memory_order_relaxed);
  return Napi::Number::New(env, produced);
}

// stats() -> {writeErrors, sendErrors, vxlanSegments, vxlanGsoSends, vxlanSuperFrames,
//             vxlanCoalesced, vxlanCsumErrors, udpSegment}
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* name, const std::atomic<uint64_t>& c) {
    o.Set(name, Napi::Number::New(env, static_cast<double>(c.load(std::memory_order_relaxed))));
  };
  set("writeErrors", g_writeErrors);
  set("sendErrors", g_sendErrors);
  set("vxlanSegments", g_vxlanSegments);
  set("vxlanGsoSends", g_vxlanGsoSends);
  set("vxlanTunnelSends", g_vxlanTunnelSends);
  set("vxlanTunnelReceived", g_vxlanTunnelRecv);
  o.Set("udpTunnelGso", Napi::Boolean::New(env, !g_tunnelOff.load(std::memory_order_relaxed)));
  set("tapUdpGsoWrites", g_tapUdpGsoWrites);
  set("tapUdpGsoDatagrams", g_tapUdpGsoDatagrams);
  o.Set("tapUdpGso", Napi::Boolean::New(env, !g_tapUdpGsoOff.load(std::memory_order_relaxed)));
  set("vxlanPlainGsoSends", g_vxlanPlainGsoSends);
  set("vxlanPlainGsoDatagrams", g_vxlanPlainGsoDatagrams);
  set("vxlanSuperFrames", g_vxlanSuperFrames);
  set("vxlanCoalesced", g_vxlanCoalesced);
  set("vxlanCsumErrors", g_vxlanCsumErrors);
  o.Set("udpSegment", Napi::Boolean::New(env, !g_udpSegmentOff.load(std::memory_order_relaxed)));
  return o;
}

// ---------------------------------------------------------------------------------------------
// FdWatcher: readiness notifications from libuv
// ---------------------------------------------------------------------------------------------
//
// Lifetimes. The JS object (and the C++ FdWatcher behind it) is garbage-collected whenever JS drops
// it, but a uv_poll_t must stay in memory until uv_close's callback has run, which is a later loop
// iteration. So the uv handle lives in its own heap block (PollHandle), owned by libuv from
// uv_close on and freed by the close callback. The FdWatcher points to it while open; the handle
// points back to the FdWatcher until it is closed, and never after.
//
// While started, the JS object is strongly referenced (ObjectWrap::Ref), so an active watcher
// is never collected even if JS forgets it, as Node does for its own handles. An active uv_poll
// handle keeps the loop alive; a stopped (closed) one does not. libuv allows one poll handle per
// fd: starting a second watcher on a watched fd throws EEXIST.
//
// Environment teardown (a worker thread ending, or the main thread exiting normally) with a handle
// still open: Node unloads an addon that only a worker loaded once the worker's environment is
// gone, and a close callback that runs after that would jump into unmapped code. So each open
// handle registers an async cleanup hook (Node-API 8): at teardown Node calls it, it closes the
// handle, and Node keeps running the loop until the close callback removes the hook.

class FdWatcher;

struct PollHandle {
  uv_poll_t poll;                       // must stay valid until OnClose
  FdWatcher* owner = nullptr;           // nullptr once closing
  napi_async_cleanup_hook_handle hook = nullptr;
  bool closing = false;
};

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&FdWatcher::Start>("start"),
                        InstanceMethod<&FdWatcher::Stop>("stop")});
  }

  // new FdWatcher(fd, onReadable)
  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    if (!ArgFd(info, 0, "FdWatcher", &fd_)) return;
    if (!info[1].IsFunction()) {
      ThrowType(env, "FdWatcher: onReadable must be a function");
      return;
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    // The async context makes callbacks show up properly to async_hooks/AsyncLocalStorage.
    // It gets its own resource object: using `this` would make the wrapper reference itself.
    asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "PodwireFdWatcher");
  }

  // Collected by GC (only possible while stopped) or at environment teardown: release the handle.
  ~FdWatcher() override { Close(); }

 private:
  // start(): begin watching for readability. No-op if already started. May follow stop().
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (active_) return env.Undefined();
    if (handle_ == nullptr) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
        Napi::Error::New(env, "FdWatcher: no libuv loop").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      auto* h = new PollHandle();
      int rc = uv_poll_init(loop, &h->poll, fd_);
      if (rc != 0) {  // never initialised: nothing to close
        delete h;
        return ThrowUv(env, rc);
      }
      h->poll.data = h;
      h->owner = this;
      handle_ = h;
      if (napi_add_async_cleanup_hook(env, OnEnvTeardown, h, &h->hook) != napi_ok) {
        h->hook = nullptr;
        Close();
        Napi::Error::New(env, "FdWatcher: napi_add_async_cleanup_hook failed")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    int rc = uv_poll_start(&handle_->poll, UV_READABLE, OnPoll);
    if (rc != 0) return ThrowUv(env, rc);
    Ref();
    active_ = true;
    return env.Undefined();
  }

  // stop(): stop watching and close the handle. Safe to call any number of times.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (active_) {
      active_ = false;
      Unref();
    }
    Close();
    return info.Env().Undefined();
  }

  // Detach from the uv handle and close it; OnClose frees it later.
  void Close() {
    if (handle_ == nullptr) return;
    CloseHandle(handle_);
    handle_ = nullptr;
  }

  static void CloseHandle(PollHandle* h) {
    if (h->closing) return;
    h->closing = true;
    h->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), OnClose);
  }

  // The last moment the handle exists: unregister the teardown hook, free the memory.
  static void OnClose(uv_handle_t* uvh) {
    auto* h = static_cast<PollHandle*>(uvh->data);
    if (h->hook != nullptr) napi_remove_async_cleanup_hook(h->hook);
    delete h;
  }

  // The environment is going away with the handle open. No JS can run any more, so only detach
  // from the wrapper (whose finalizer comes later and must not close the handle again) and close.
  static void OnEnvTeardown(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
    auto* h = static_cast<PollHandle*>(arg);
    if (h->owner != nullptr) {
      h->owner->handle_ = nullptr;
      h->owner->active_ = false;
    }
    CloseHandle(h);
  }

  // libuv: the fd is readable (status 0), or polling failed (status < 0; libuv has stopped the
  // handle already, e.g. UV_EBADF when a TAP's device is gone).
  static void OnPoll(uv_poll_t* poll, int status, int /*events*/) {
    auto* h = static_cast<PollHandle*>(poll->data);
    if (h->owner != nullptr) h->owner->Dispatch(status);
  }

  // Call onReadable() (or onReadable(error) when polling failed) as a top-level callback:
  // MakeCallback runs the async hooks and, afterwards, process.nextTick and microtask queues.
  // An exception thrown by the callback is not ours to swallow: it goes to 'uncaughtException'.
  void Dispatch(int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Object self = Value();  // keeps the wrapper alive even if the callback drops it
    napi_value args[1];
    size_t argc = 0;
    if (status < 0) {
      if (active_) {  // libuv stopped polling: stop keeping ourselves alive
        active_ = false;
        Unref();
      }
      args[argc++] = UvError(env, status).Value();
    }
    callback_.MakeCallback(self, argc, args, *asyncContext_);
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  Napi::Error UvError(Napi::Env env, int uvErr) {
    return ErrnoError(env, FdWhat("FdWatcher", fd_), -uvErr);  // libuv errors are -errno on Unix
  }

  Napi::Value ThrowUv(Napi::Env env, int uvErr) {
    UvError(env, uvErr).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  int fd_ = -1;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  PollHandle* handle_ = nullptr;  // open uv handle, or nullptr
  bool active_ = false;           // polling and Ref()'d
};

// ---------------------------------------------------------------------------------------------
// Module
// ---------------------------------------------------------------------------------------------

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openTap", Napi::Function::New<OpenTap>(env, "openTap"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("readBatch", Napi::Function::New<ReadBatch>(env, "readBatch"));
  exports.Set("writeBatch", Napi::Function::New<WriteBatch>(env, "writeBatch"));
  exports.Set("openUdp", Napi::Function::New<OpenUdp>(env, "openUdp"));
  exports.Set("openRawIp", Napi::Function::New<OpenRawIp>(env, "openRawIp"));
  exports.Set("recvBatch", Napi::Function::New<RecvBatch>(env, "recvBatch"));
  exports.Set("sendBatch", Napi::Function::New<SendBatch>(env, "sendBatch"));
  exports.Set("FdWatcher", FdWatcher::Define(env));
  exports.Set("stats", Napi::Function::New<Stats>(env, "stats"));
  exports.Set("setOffload", Napi::Function::New<SetOffload>(env, "setOffload"));
  exports.Set("getIfMtu", Napi::Function::New<GetIfMtu>(env, "getIfMtu"));
  exports.Set("enableUdpGro", Napi::Function::New<EnableUdpGro>(env, "enableUdpGro"));
  exports.Set("openUdpSender", Napi::Function::New<OpenUdpSender>(env, "openUdpSender"));
  exports.Set("spinPoll", Napi::Function::New<SpinPoll>(env, "spinPoll"));
  exports.Set("sendVxlanBatch", Napi::Function::New<SendVxlanBatch>(env, "sendVxlanBatch"));
  exports.Set("recvVxlanBatch", Napi::Function::New<RecvVxlanBatch>(env, "recvVxlanBatch"));
  return exports;
}

}  // namespace

NODE_API_MODULE(podwire_native, Init)
