/**
 * Which kernel features a test may count on, by the Linux release that added them. Tests that
 * assert a feature's effect run only where the kernel has it, and the fallback's otherwise.
 */

/** Is a Linux release string (`uname -r`, os.release(): "6.1.0-18-amd64") at least major.minor? */
export function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const [ma, mi] = release.split('.').map(Number);
  return ma > major || (ma === major && mi >= minor);
}

/** A TAP takes UDP_L4 GSO (USO) frames written to it: Linux 6.2. */
export const takesTapUso = (release: string): boolean => kernelAtLeast(release, 6, 2);

/** A TAP does UDP-tunnel GSO (TUN_F_UDP_TUNNEL_GSO, 24-byte tunnel virtio-net header): Linux 6.17. */
export const hasTapTunnelGso = (release: string): boolean => kernelAtLeast(release, 6, 17);
