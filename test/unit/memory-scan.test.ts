/** The source's bookkeeping over page lists at the stun: the union of what two scans found. */
import { mergePageLists } from '../../data-plane/memory-scan';

const list = (...indexes: number[]): Uint32Array => Uint32Array.from(indexes);

test('the union of two ascending page lists is ascending, each page once', () => {
  expect(Array.from(mergePageLists(list(1, 4, 9), list(2, 4, 10, 11)))).toEqual([1, 2, 4, 9, 10, 11]);
  expect(Array.from(mergePageLists(list(), list(0, 7)))).toEqual([0, 7]);
  expect(Array.from(mergePageLists(list(5), list()))).toEqual([5]);
  expect(Array.from(mergePageLists(list(), list()))).toEqual([]);
  expect(Array.from(mergePageLists(list(0, 1, 2), list(0, 1, 2)))).toEqual([0, 1, 2]);
});
