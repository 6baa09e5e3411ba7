/**
 * The port table: every attachment point of the node's switch-router.
 *
 *   port 0      the overlay (VXLAN over the underlay; a virtual port, no MAC of its own)
 *   port 1      the host port: a TAP in the node's own network namespace (`podwire0`), through which
 *               the node's kernel reaches pods and pods reach the node
 *   port 2..N   pods: a TAP each, moved into the pod's namespace as `eth0`
 *
 * Each port carries what anti-spoofing needs (the pod's MAC and IPv4 address) and its fd. Arrays
 * are indexed by port number, so the hot path reads them without hashing. Written by the control
 * plane (attach/detach), read by the data plane.
 */
export const PortKind = { Free: 0, Overlay: 1, Host: 2, Pod: 3 } as const;
export type PortKind = (typeof PortKind)[keyof typeof PortKind];

export const OVERLAY_PORT = 0;
export const HOST_PORT = 1;
export const FIRST_POD_PORT = 2;

export class PortTable {
  readonly maxPorts: number;
  readonly kind: Uint8Array;
  readonly fd: Int32Array;
  readonly macHi: Uint16Array;
  readonly macLo: Uint32Array;
  readonly ip: Uint32Array;
  /** Control-path labels for views and metrics (`default/web-1`, `host`, `overlay`). */
  readonly label: string[];

  constructor(maxPorts = 1024) {
    this.maxPorts = maxPorts;
    this.kind = new Uint8Array(maxPorts);
    this.fd = new Int32Array(maxPorts).fill(-1);
    this.macHi = new Uint16Array(maxPorts);
    this.macLo = new Uint32Array(maxPorts);
    this.ip = new Uint32Array(maxPorts);
    this.label = new Array<string>(maxPorts).fill('');
  }

  /** Claim a specific port number (overlay, host) or the lowest free pod port (when `port` is -1). */
  attach(kind: PortKind, fd: number, macHi: number, macLo: number, ip: number, label: string, port = -1): number {
    if (port < 0) {
      for (let p = FIRST_POD_PORT; p < this.maxPorts; p++) if (this.kind[p] === PortKind.Free) { port = p; break; }
      if (port < 0) throw new Error(`port table full (${this.maxPorts} ports)`);
    } else if (this.kind[port] !== PortKind.Free) {
      throw new Error(`port ${port} is already attached (${this.label[port]})`);
    }
    this.kind[port] = kind; this.fd[port] = fd;
    this.macHi[port] = macHi; this.macLo[port] = macLo >>> 0; this.ip[port] = ip >>> 0;
    this.label[port] = label;
    return port;
  }

  /** Release a port; frames that still name it are dropped as `unknown_port`. */
  detach(port: number): void {
    this.kind[port] = PortKind.Free; this.fd[port] = -1;
    this.macHi[port] = 0; this.macLo[port] = 0; this.ip[port] = 0; this.label[port] = '';
  }

  /** Ports currently attached (control path). */
  attached(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.maxPorts; p++) if (this.kind[p] !== PortKind.Free) out.push(p);
    return out;
  }
}
