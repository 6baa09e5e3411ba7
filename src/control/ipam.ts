/**
 * Per-node IPv4 address management (IPAM): which pod owns which address of the node's pod CIDR.
 *
 * In Kubernetes every node is given a block of addresses (`spec.podCIDR`, e.g. 10.244.1.0/24) and
 * the node's CNI plugin hands out one address per pod from it (the reference plugin is
 * `host-local`). podwire does the same, in memory, with these rules:
 *
 *   - The network address (10.244.1.0) and the broadcast address (10.244.1.255) are never given
 *     to a pod: hosts treat them as "this network" and "everyone on it".
 *   - The first host address (10.244.1.1) is the gateway: the node's own address on the pod
 *     network, which every pod uses as its default route. It is reserved, never allocated.
 *   - So a /24 holds 256 - 3 = 253 pods, and a /30 exactly one.
 *   - `allocate(owner)` is idempotent: asking again for the same owner (a pod uid) returns the same
 *     address, so a restarted reconcile loop cannot leak addresses.
 *   - Without a pin, the lowest free address above the gateway is chosen. This is deterministic,
 *     so the lab prints the same addresses on every run. (host-local instead continues after the
 *     last address it handed out, so that a just-freed address is not reused at once while stale
 *     ARP or conntrack entries might still point at it. podwire prefers reproducible output.)
 *   - A pin (annotation podwire.io/ip) asks for one exact address; it must be inside the CIDR, not
 *     reserved and not held by another owner.
 *
 * Every refusal is an `IpamError` whose message names the CIDR, the owner and the address.
 *
 * Layout: a bitmap with one bit per address of the CIDR (a /16 costs 8 KiB), plus a "lowest
 * possibly free" cursor. Allocation scans forward from the cursor a 32-bit word at a time,
 * skipping full words, so it is O(1) amortised for the usual allocate-mostly workload; release
 * moves the cursor back down so the lowest-free rule holds.
 */
import ipaddr from 'ipaddr.js';

export class IpamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IpamError';
  }
}

/** Smallest and largest pod CIDR prefix podwire accepts (matches the manifest rules). */
export const IPAM_MIN_PREFIX = 8;
export const IPAM_MAX_PREFIX = 30;

export class NodeIpam {
  /** The CIDR as given, e.g. "10.244.1.0/24". */
  readonly cidr: string;
  private readonly network: number; // host-order u32 of the network address
  private readonly prefix: number;
  private readonly size: number; // addresses in the CIDR, including network and broadcast
  private readonly bits: Uint32Array; // bit i set = network + i is taken (reserved or allocated)
  private readonly byOwner = new Map<string, number>(); // owner -> offset
  private readonly byOffset = new Map<number, string>(); // offset -> owner
  private cursor = 2; // every offset below this is known to be taken

  constructor(cidr: string) {
    const m = /^([^/]+)\/(0|[1-9]\d?)$/.exec(cidr);
    if (m === null || !ipaddr.IPv4.isValidFourPartDecimal(m[1]!)) {
      throw new IpamError(`invalid pod CIDR ${JSON.stringify(cidr)}: expected an IPv4 CIDR like 10.244.1.0/24`);
    }
    const prefix = Number(m[2]);
    if (prefix < IPAM_MIN_PREFIX || prefix > IPAM_MAX_PREFIX) {
      throw new IpamError(`invalid pod CIDR ${cidr}: prefix length /${prefix} is out of range /${IPAM_MIN_PREFIX}../${IPAM_MAX_PREFIX}`);
    }
    const network = ipaddr.IPv4.networkAddressFromCIDR(cidr).toString();
    if (network !== m[1]) throw new IpamError(`invalid pod CIDR ${cidr}: host bits are set (did you mean ${network}/${prefix}?)`);

    this.cidr = cidr;
    this.prefix = prefix;
    this.network = toU32(network);
    this.size = 2 ** (32 - prefix);
    this.bits = new Uint32Array(Math.ceil(this.size / 32));
    this.mark(0); // network address
    this.mark(1); // gateway
    this.mark(this.size - 1); // broadcast
  }

  /** The gateway (first host) address, e.g. 10.244.1.1. */
  get gateway(): string {
    return fromU32(this.network + 1);
  }

  get prefixLength(): number {
    return this.prefix;
  }

  /** Whether `ip` lies inside the CIDR (network and broadcast included). Malformed text: false. */
  contains(ip: string): boolean {
    return this.offsetOf(ip) !== undefined;
  }

  /** Addresses currently allocated to owners. */
  used(): number {
    return this.byOwner.size;
  }

  /** Addresses that can ever be allocated: the CIDR minus network, gateway and broadcast. */
  capacity(): number {
    return this.size - 3;
  }

  /** The address held by `owner`, if any. */
  lookup(owner: string): string | undefined {
    const off = this.byOwner.get(owner);
    return off === undefined ? undefined : fromU32(this.network + off);
  }

  /** The owner holding `ip`, if any (reverse of lookup). */
  ownerOf(ip: string): string | undefined {
    const off = this.offsetOf(ip);
    return off === undefined ? undefined : this.byOffset.get(off);
  }

  /**
   * Give `owner` an address and return it. Idempotent: an owner that already holds an address gets
   * it again (if `pinned` is given it must be that same address). Throws IpamError when the pin is
   * unusable or the CIDR is full.
   */
  allocate(owner: string, pinned?: string): string {
    if (owner === '') throw new IpamError(`${this.cidr}: the owner must be a non-empty string`);
    const held = this.byOwner.get(owner);
    if (held !== undefined) {
      const ip = fromU32(this.network + held);
      if (pinned !== undefined && pinned !== ip) {
        throw new IpamError(`${this.cidr}: ${owner} already holds ${ip}; cannot pin it to ${pinned} (release it first)`);
      }
      return ip;
    }
    const off = pinned === undefined ? this.lowestFree(owner) : this.checkPin(owner, pinned);
    this.mark(off);
    this.byOwner.set(owner, off);
    this.byOffset.set(off, owner);
    return fromU32(this.network + off);
  }

  /** Return `owner`'s address to the pool. Releasing an owner that holds nothing is a no-op. */
  release(owner: string): void {
    const off = this.byOwner.get(owner);
    if (off === undefined) return;
    this.byOwner.delete(owner);
    this.byOffset.delete(off);
    this.bits[off >>> 5] &= ~(1 << (off & 31));
    if (off < this.cursor) this.cursor = off;
  }

  private checkPin(owner: string, pinned: string): number {
    if (!ipaddr.IPv4.isValidFourPartDecimal(pinned)) {
      throw new IpamError(`${this.cidr}: cannot pin ${owner} to ${JSON.stringify(pinned)}: not a valid IPv4 address`);
    }
    const off = this.offsetOf(pinned);
    if (off === undefined) throw new IpamError(`${this.cidr}: cannot pin ${owner} to ${pinned}: outside the pod CIDR`);
    if (off === 0) throw new IpamError(`${this.cidr}: cannot pin ${owner} to ${pinned}: it is the network address`);
    if (off === 1) throw new IpamError(`${this.cidr}: cannot pin ${owner} to ${pinned}: it is reserved for the gateway`);
    if (off === this.size - 1) throw new IpamError(`${this.cidr}: cannot pin ${owner} to ${pinned}: it is the broadcast address`);
    const other = this.byOffset.get(off);
    if (other !== undefined) throw new IpamError(`${this.cidr}: cannot pin ${owner} to ${pinned}: already allocated to ${other}`);
    return off;
  }

  /** Lowest clear bit at or above the cursor; skips whole words that are full. */
  private lowestFree(owner: string): number {
    const words = this.bits.length;
    if (this.cursor < this.size) {
      let w = this.cursor >>> 5;
      // Bits below the cursor in its first word count as taken even if they are not yet scanned.
      let word = (this.bits[w] | ((1 << (this.cursor & 31)) - 1)) >>> 0;
      while (word === 0xffffffff && ++w < words) word = this.bits[w];
      if (w < words) {
        const off = (w << 5) + ctz32(~word);
        if (off < this.size) {
          this.cursor = off + 1;
          return off;
        }
      }
      this.cursor = this.size;
    }
    throw new IpamError(`${this.cidr}: no free address for ${owner}: all ${this.capacity()} pod addresses are allocated`);
  }

  private mark(off: number): void {
    this.bits[off >>> 5] |= 1 << (off & 31);
  }

  /** Offset of `ip` from the network address, or undefined when outside the CIDR or malformed. */
  private offsetOf(ip: string): number | undefined {
    if (!ipaddr.IPv4.isValidFourPartDecimal(ip)) return undefined;
    const off = toU32(ip) - this.network;
    return off >= 0 && off < this.size ? off : undefined;
  }
}

function toU32(ip: string): number {
  const o = ipaddr.IPv4.parse(ip).octets;
  return ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
}

function fromU32(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Count trailing zero bits of a 32-bit value (32 for 0). */
function ctz32(x: number): number {
  x >>>= 0;
  if (x === 0) return 32;
  return 31 - Math.clz32(x & -x);
}
