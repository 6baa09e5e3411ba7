/** test/kernel.ts: release strings as uname -r prints them, on both sides of each feature's version. */
import { describe, expect, it } from 'vitest';
import { hasTapTunnelGso, kernelAtLeast, takesTapUso } from '../kernel.ts';

describe('kernel release checks', () => {
  it('compares major, then minor, ignoring the rest of the string', () => {
    expect(kernelAtLeast('6.2.0', 6, 2)).toBe(true);
    expect(kernelAtLeast('6.1.0-18-amd64', 6, 2)).toBe(false);
    expect(kernelAtLeast('6.10.3', 6, 2)).toBe(true);      // numeric, not string, comparison
    expect(kernelAtLeast('5.19.17', 6, 2)).toBe(false);
    expect(kernelAtLeast('7.0.1-rc2', 6, 17)).toBe(true);
  });
  it('knows which release added USO on TAP writes and UDP-tunnel GSO', () => {
    expect([takesTapUso('6.1.0-18-amd64'), takesTapUso('6.2.16')]).toEqual([false, true]);
    expect([hasTapTunnelGso('6.16.9'), hasTapTunnelGso('6.17.0'), hasTapTunnelGso('6.18.44-fc-v669')]).toEqual([false, true, true]);
  });
});
