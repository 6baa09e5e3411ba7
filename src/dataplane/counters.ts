/**
 * Counters: plain typed arrays that the hot path bumps and the metrics endpoint reads at scrape time.
 *
 * Drops are counted twice, globally by reason and per input port by reason, so `podwire show ports`
 * can say "pod default/web-1 sent 12 frames with a spoofed source IP". Indexes come from the one
 * `Drop` list in wire/drop.ts. Nothing here allocates after construction.
 */
import { DROP_COUNT } from '../wire/drop.ts';

export class Counters {
  readonly maxPorts: number;
  readonly drops = new Float64Array(DROP_COUNT);
  readonly portDrops: Float64Array;
  readonly rxPackets: Float64Array;
  readonly rxBytes: Float64Array;
  readonly txPackets: Float64Array;
  readonly txBytes: Float64Array;
  /** Frames answered by the daemon itself (ARP for the gateway, ping of the gateway). */
  localReplies = 0;
  icmpErrorsSent = 0;
  icmpErrorsRateLimited = 0;
  vxlanEncap = 0;
  vxlanDecap = 0;
  floods = 0;
  batches = 0;
  batchFrames = 0;

  constructor(maxPorts: number) {
    this.maxPorts = maxPorts;
    this.portDrops = new Float64Array(maxPorts * DROP_COUNT);
    this.rxPackets = new Float64Array(maxPorts);
    this.rxBytes = new Float64Array(maxPorts);
    this.txPackets = new Float64Array(maxPorts);
    this.txBytes = new Float64Array(maxPorts);
  }

  /** Count one dropped frame from `port` for `reason`. */
  drop(port: number, reason: number): void {
    this.drops[reason]++;
    if (port >= 0) this.portDrops[port * DROP_COUNT + reason]++;
  }

  /** Reset a port's counters when it is reused for another pod. */
  resetPort(port: number): void {
    this.portDrops.fill(0, port * DROP_COUNT, (port + 1) * DROP_COUNT);
    this.rxPackets[port] = 0; this.rxBytes[port] = 0; this.txPackets[port] = 0; this.txBytes[port] = 0;
  }
}
