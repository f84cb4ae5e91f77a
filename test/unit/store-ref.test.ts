import { InvalidStoreRefError, parseStoreRef } from '../../store/store-ref';

describe('store names', () => {
  it('read a path as a directory and s3://bucket/prefix as a bucket and a prefix', () => {
    expect(parseStoreRef('/mnt/ferry')).toEqual({ kind: 'directory', dir: '/mnt/ferry' });
    expect(parseStoreRef('relative/dir')).toEqual({ kind: 'directory', dir: 'relative/dir' });
    expect(parseStoreRef('s3://ferry-pages/fleet/a/')).toEqual({
      kind: 's3',
      bucket: 'ferry-pages',
      prefix: 'fleet/a',
    });
    expect(parseStoreRef('s3://ferry-pages')).toEqual({ kind: 's3', bucket: 'ferry-pages', prefix: '' });
  });

  it.each([
    ['', 'store must be a directory path or s3://bucket/prefix, got ""'],
    [
      'nfs://host/export',
      'store "nfs://host/export" uses nfs://; only a directory path or s3://bucket/prefix is supported',
    ],
    ['s3://', 'store "s3://" names bucket "": a bucket name has 3-63 characters'],
    ['s3://Upper/p', 'store "s3://Upper/p" names bucket "Upper"'],
    ['s3://a..b/p', 'store "s3://a..b/p" names bucket "a..b"'],
    ['s3://bucket/.hidden/x', 'store "s3://bucket/.hidden/x" has a bad prefix'],
  ])('refuse %j, saying what is wrong', (ref, message) => {
    expect(() => parseStoreRef(ref)).toThrow(InvalidStoreRefError);
    expect(() => parseStoreRef(ref)).toThrow(message);
  });
});
