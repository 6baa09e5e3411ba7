// floor-relay: the cheapest userspace VXLAN hop there is, as a yardstick for latency.
//
// The bench runs one of these per node in place of podwire's daemon (bench/floor.ts). It owns a TAP
// (the pod's eth0) and a UDP socket on the node's underlay address, and does nothing else:
//
//   TAP frame      -> prepend an 8-byte VXLAN header -> send to the one peer node
//   VXLAN datagram -> strip the 8 bytes              -> write into the TAP
//
// No tables, no ARP, no routing, no policy, no counters, no vnet header: one frame per system call,
// both pods on one L2 segment stretched over the tunnel. A ping through two of these measures what
// any data plane built as a process per node pays on this machine before doing any work of its
// own: waking a sleeping process twice per direction, four system calls per hop, and a cold cache.
// podwire's cross-node ping is read against it (bench/cross-node.ts).
//
//   floor-relay TAP LOCAL_IP PEER_IP UDP_PORT VNI MAX_SECONDS [spin]
//
// Sleeping mode waits in epoll_wait(2) like podwire's default. `spin` polls the way
// `podwire daemon --busy-poll 20000` does: for 20 ms after traffic it polls with a zero timeout,
// calling sched_yield(2) between empty rounds, and only then goes back to sleep. It prints "ready"
// once the TAP and the socket exist, and exits by itself after MAX_SECONDS (the bench kills it long
// before).
//
// VXLAN header (RFC 7348 section 5):
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |R|R|R|R|I|R|R|R|            Reserved                           |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                VXLAN Network Identifier (VNI) |   Reserved    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr size_t kVxlanHeaderLen = 8;
constexpr uint8_t kVxlanFlagVniValid = 0x08;  // the I bit
constexpr size_t kMaxFrame = 65535;
constexpr double kSpinSeconds = 0.020;  // podwire's --busy-poll 20000
uint8_t g_txBuf[kVxlanHeaderLen + kMaxFrame];  // [VXLAN header][frame read from the TAP]
uint8_t g_rxBuf[kVxlanHeaderLen + kMaxFrame];  // a datagram from the peer

int Fail(const char* what) {
  perror(what);
  return 1;
}

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: floor-relay TAP LOCAL_IP PEER_IP UDP_PORT VNI MAX_SECONDS [spin]\n");
    return 2;
  }
  const char* tapName = argv[1];
  const int port = atoi(argv[4]);
  const uint32_t vni = static_cast<uint32_t>(strtoul(argv[5], nullptr, 10));
  const double maxSeconds = atof(argv[6]);
  const bool spin = argc > 7 && strcmp(argv[7], "spin") == 0;

  int tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tap < 0) return Fail("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, tapName, IFNAMSIZ - 1);
  if (ioctl(tap, TUNSETIFF, &ifr) < 0) return Fail("TUNSETIFF");

  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp < 0) return Fail("socket");
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) return Fail("LOCAL_IP");
  if (bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return Fail("bind");
  if (inet_pton(AF_INET, argv[3], &addr.sin_addr) != 1) return Fail("PEER_IP");
  if (connect(udp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return Fail("connect");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return Fail("epoll_create1");
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = tap;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tap, &ev) < 0) return Fail("epoll_ctl tap");
  ev.data.fd = udp;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev) < 0) return Fail("epoll_ctl udp");

  // The header of every frame we send, written once: only the I flag and the VNI are set. Nothing
  // else is ever written to these 8 bytes (datagrams are received into their own buffer).
  memset(g_txBuf, 0, kVxlanHeaderLen);
  g_txBuf[0] = kVxlanFlagVniValid;
  g_txBuf[4] = static_cast<uint8_t>(vni >> 16);
  g_txBuf[5] = static_cast<uint8_t>(vni >> 8);
  g_txBuf[6] = static_cast<uint8_t>(vni);
  printf("ready\n");
  fflush(stdout);

  const double deadline = Now() + maxSeconds;
  double spinUntil = 0;  // spin mode: poll without sleeping until then
  for (;;) {
    const double now = Now();
    if (now >= deadline) return 0;
    const bool polling = spin && now < spinUntil;
    struct epoll_event ready[2];
    // Sleeping wakes at least once a second to check the deadline.
    int n = epoll_wait(ep, ready, 2, polling ? 0 : 1000);
    if (n == 0 && polling) sched_yield();  // other runnable tasks on this CPU go first
    if (n > 0 && spin) spinUntil = Now() + kSpinSeconds;
    for (int i = 0; i < n; i++) {
      if (ready[i].data.fd == tap) {
        for (;;) {  // every queued frame: TAP -> VXLAN
          ssize_t len = read(tap, g_txBuf + kVxlanHeaderLen, kMaxFrame);
          if (len <= 0) break;
          send(udp, g_txBuf, kVxlanHeaderLen + len, 0);
        }
      } else {
        for (;;) {  // every queued datagram: VXLAN -> TAP (anything too short to carry a frame is dropped)
          ssize_t len = recv(udp, g_rxBuf, sizeof g_rxBuf, 0);
          if (len < 0) break;
          if (len > static_cast<ssize_t>(kVxlanHeaderLen)) write(tap, g_rxBuf + kVxlanHeaderLen, len - kVxlanHeaderLen);
        }
      }
    }
  }
}
