import { formatSize, parseSize } from '../../vmm/size';

describe('parseSize', () => {
  it.each([
    ['4096', 4096],
    ['512B', 512],
    ['64MiB', 64 * 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['512M', 512 * 1024 ** 2],
    ['8k', 8192],
    ['1.5 GiB', 1.5 * 1024 ** 3],
    ['2GB', 2 * 1024 ** 3],
  ])('reads %s as %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it('passes whole numbers of bytes through', () => {
    expect(parseSize(8192)).toBe(8192);
  });

  it.each(['12XB', '', 'GiB', '-1MiB', '1e3', '1 2'])(
    'rejects %j with a message naming the input and the format',
    (input) => {
      expect(() => parseSize(input)).toThrow(
        `malformed size ${JSON.stringify(input)}: expected a number with an optional unit B, KiB, MiB, GiB`,
      );
    },
  );

  it('rejects a fraction of a byte and a negative number', () => {
    expect(() => parseSize('0.3K')).toThrow(/not a whole number of bytes/);
    let thrown: unknown;
    try {
      parseSize(-5);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as Error).name).toBe('InvalidSizeError');
  });
});

describe('formatSize', () => {
  it('uses the largest binary unit', () => {
    expect(formatSize(1024 ** 3)).toBe('1 GiB');
    expect(formatSize(1536)).toBe('1.5 KiB');
    expect(formatSize(1000)).toBe('1000 B');
  });
});
