import { decodeManifest, encodeManifest, type Manifest } from '../../store/manifest-format';

const DIGEST = 'a3f1'.repeat(16);

function finalManifest(): Manifest {
  return {
    round: 7,
    final: true,
    indexes: Uint32Array.from([0, 5, 4096, 0x7fffffff]),
    versions: Uint32Array.from([1, 9, 3, 0xffffffff]),
    finalSeq: 1234,
    digest: DIGEST,
  };
}

describe('manifest format', () => {
  it('decodes a final manifest to what was encoded', () => {
    const decoded = decodeManifest(encodeManifest(finalManifest()));
    expect(decoded.round).toBe(7);
    expect(decoded.final).toBe(true);
    expect(Array.from(decoded.indexes)).toEqual([0, 5, 4096, 0x7fffffff]);
    expect(Array.from(decoded.versions)).toEqual([1, 9, 3, 0xffffffff]);
    expect(decoded.finalSeq).toBe(1234);
    expect(decoded.digest).toBe(DIGEST);
  });

  it('decodes a round manifest with no digest and an empty one with no pages', () => {
    const round = decodeManifest(
      encodeManifest({
        round: 2,
        final: false,
        indexes: Uint32Array.from([3]),
        versions: Uint32Array.from([8]),
        finalSeq: 0,
        digest: '',
      }),
    );
    expect(round).toMatchObject({ round: 2, final: false, finalSeq: 0, digest: '' });
    expect(Array.from(round.indexes)).toEqual([3]);

    const empty = decodeManifest(
      encodeManifest({
        round: 0,
        final: false,
        indexes: new Uint32Array(0),
        versions: new Uint32Array(0),
        finalSeq: 0,
        digest: '',
      }),
    );
    expect(empty.indexes.length).toBe(0);
    expect(empty.versions.length).toBe(0);
  });

  it('encodes views into larger arrays using only the viewed elements', () => {
    const indexes = Uint32Array.from([99, 10, 11, 99]).subarray(1, 3);
    const versions = Uint32Array.from([77, 2, 3, 77]).subarray(1, 3);
    const decoded = decodeManifest(
      encodeManifest({ round: 1, final: false, indexes, versions, finalSeq: 0, digest: '' }),
    );
    expect(Array.from(decoded.indexes)).toEqual([10, 11]);
    expect(Array.from(decoded.versions)).toEqual([2, 3]);
  });

  it('refuses to encode indexes and versions of different lengths', () => {
    expect(() =>
      encodeManifest({
        round: 1,
        final: false,
        indexes: Uint32Array.from([1, 2]),
        versions: Uint32Array.from([1]),
        finalSeq: 0,
        digest: '',
      }),
    ).toThrow('manifest indexes and versions differ in length');
  });

  it.each([
    ['the round', 8],
    ['the digest', 30],
    ['a page index', 88],
    ['a page version', 88 + 4 * 4],
    ['the checksum', -2],
  ])('detects a flipped byte in %s', (_where, at) => {
    const buf = encodeManifest(finalManifest());
    const offset = at < 0 ? buf.length + at : at;
    buf[offset] = (buf[offset] as number) ^ 0x10;
    expect(() => decodeManifest(buf)).toThrow('manifest checksum mismatch');
  });

  it('detects a truncated manifest and bytes that are not a manifest', () => {
    const buf = encodeManifest(finalManifest());
    expect(() => decodeManifest(buf.subarray(0, buf.length - 4))).toThrow(
      'manifest length does not match its page count',
    );
    expect(() => decodeManifest(Buffer.alloc(200))).toThrow('not a ferry manifest');
  });
});
