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
// (readv/write) and one syscall per 64 datagrams for UDP (recvmmsg/sendmmsg). The frames land in, or
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
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

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

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

// Frames dropped because write(2)/sendmmsg(2) failed permanently, or because JS passed an offset and
// length outside its buffer. Process-wide (shared by all worker threads), hence atomic.
std::atomic<uint64_t> g_writeErrors{0};
std::atomic<uint64_t> g_sendErrors{0};

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
    // which is what virtio-net and vhost use, so JS only ever has to handle one layout.
    int hdrSize = sizeof(VirtioNetHdrV1);
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

// closeFd(fd): close(2). EINTR is success on Linux (the fd is gone either way).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "closeFd", &fd)) return env.Undefined();
  if (close(fd) < 0 && errno != EINTR) return ThrowErrno(env, FdWhat("closeFd", fd), errno);
  return env.Undefined();
}

// readBatch(fd, buf, firstSlot, slotSize, headroom, maxFrames, lens) -> frames read
// One read per frame (a TAP returns exactly one frame per read) until the queue is empty (EAGAIN)
// or maxFrames frames have been read. A TAP silently truncates a frame that does not fit in the
// buffer and returns the truncated length, so each read is a readv(2) whose second iovec is one
// spare byte: a result longer than the slot's room means the frame was cut, and its length is
// reported as -1 (as recvBatch does for truncated datagrams) so that JS drops it.
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
  struct iovec iov[2];
  iov[1].iov_base = &t_spare;
  iov[1].iov_len = 1;
  while (n < s.maxFrames) {
    iov[0].iov_base = buf + (static_cast<size_t>(s.firstSlot) + n) * s.slotSize + s.headroom;
    iov[0].iov_len = room;
    ssize_t r = readv(fd, iov, 2);
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

// writeBatch(fd, buf, offsets, lens, start, count) -> frames consumed
// One write(2) per frame. Stops at EAGAIN (the device queue is full; JS retries from there).
// Any other failure (EIO while the link is down, EINVAL for a runt frame, ...) and any
// offset/length outside `buf` drops that frame: it is counted in writeErrors and consumed.
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

  uint32_t i = 0;
  while (i < count) {
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
  std::string what = "openUdp(" + AddrPort(addr, port) + ")";

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, what, errno);

  SetSockBuf(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20);
  SetSockBuf(fd, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(addr);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, what, err);
  }
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
      memset(&t_addrs[k], 0, sizeof t_addrs[k]);
      t_addrs[k].sin_family = AF_INET;
      t_addrs[k].sin_addr.s_addr = htonl(dstAddrs[idx]);
      t_addrs[k].sin_port = htons(dstPorts[idx]);
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

// stats() -> {writeErrors, sendErrors}
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("writeErrors",
        Napi::Number::New(env, static_cast<double>(g_writeErrors.load(std::memory_order_relaxed))));
  o.Set("sendErrors",
        Napi::Number::New(env, static_cast<double>(g_sendErrors.load(std::memory_order_relaxed))));
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
  return exports;
}

}  // namespace

NODE_API_MODULE(podwire_native, Init)
