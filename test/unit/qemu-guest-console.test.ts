import { parseGuestConsoleLine } from '../../vmm/qemu/guest-console';

describe('guest console lines', () => {
  it('reads a heartbeat into numbers, the checksum and the state', () => {
    expect(
      parseGuestConsoleLine(
        'ferry-hb seq=29 ms=3019 written=149999616 sum=4fcc688b2b27c0ba verified=46800 sweeps=3 bad=0 state=ok\r',
      ),
    ).toEqual({
      type: 'heartbeat',
      seq: 29,
      guestMs: 3019,
      writtenBytes: 149999616,
      sum: '4fcc688b2b27c0ba',
      verifiedPages: 46800,
      sweeps: 3,
      bad: 0,
      state: 'ok',
    });
  });

  it('reads a corrupt guest as CORRUPT with its count of failed checks', () => {
    const hb = parseGuestConsoleLine(
      'ferry-hb seq=1 ms=200 written=0 sum=0000000000000001 verified=10 sweeps=0 bad=2 state=CORRUPT',
    );
    expect(hb).toMatchObject({ type: 'heartbeat', bad: 2, state: 'CORRUPT' });
    expect(parseGuestConsoleLine('ferry-corrupt page=17 want=00000000000000aa got=00000000000000bb')).toEqual({
      type: 'corrupt',
      page: '17',
      want: '00000000000000aa',
      got: '00000000000000bb',
    });
  });

  it('reads the start, ready, error and exit lines', () => {
    expect(
      parseGuestConsoleLine('ferry-memwriter start pages=12288 hot_pages=4096 rate_mbps=50 verify_mbps=64'),
    ).toEqual({ type: 'start', pages: 12288, hotPages: 4096, rateMbPerSec: 50, verifyMbPerSec: 64 });
    expect(parseGuestConsoleLine('ferry-memwriter ready fill_ms=28 sum=bdc4671b1006dd67')).toEqual({
      type: 'ready',
      fillMs: 28,
      sum: 'bdc4671b1006dd67',
    });
    expect(parseGuestConsoleLine('ferry-memwriter error cannot allocate 64 MiB')).toEqual({
      type: 'error',
      text: 'cannot allocate 64 MiB',
    });
    expect(parseGuestConsoleLine('ferry-memwriter exit status=137')).toEqual({ type: 'exit', status: 137 });
  });

  it('ignores kernel messages and a heartbeat cut short by a migration', () => {
    expect(parseGuestConsoleLine('[    1.487649] Run /init as init process')).toBeUndefined();
    expect(parseGuestConsoleLine('ferry-hb seq=12 ms=1214 written=59998208 sum=d35c17')).toBeUndefined();
    expect(parseGuestConsoleLine('weeps=1 bad=0 state=ok')).toBeUndefined();
    expect(
      parseGuestConsoleLine('ferry-hb seq=-1 ms=1 written=1 sum=0000000000000000 verified=1 sweeps=0 bad=0 state=ok'),
    ).toBeUndefined();
  });
});
