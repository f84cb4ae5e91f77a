/** Checks of guest memory after a migration. */
export { compareMemory, compareMemoryFiles, type MemoryComparison } from './compare-memory';
export { compareMigratedMemory, type MemoryDumper, type MigratedMemoryCheck } from './compare-migrated';
export { compareWithPageFile, memoryFromPageFile } from './compare-page-file';
