/**
 * Follows a file that another process appends to (QEMU's serial console log) and hands out its
 * complete lines. Woken by inotify (fs.watch) with a slow poll as a safety net, since inotify
 * can miss writes to a file that was replaced. Reads only what was appended since the last read;
 * a partial last line waits for its newline.
 */
import * as fs from 'node:fs';

/** How often the file is re-read when no change notification came, in milliseconds. */
export const DEFAULT_FILE_TAIL_POLL_MS = 250;

/** Follows one file; see the module header. */
export class FileTail {
  private offset = 0;
  private partial = '';
  private reading = false;
  private again = false;
  private watcher: fs.FSWatcher | undefined;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  /** Starts following `file` (which may not exist yet) from its start; `onLine` gets each line. */
  constructor(
    readonly file: string,
    private readonly onLine: (line: string) => void,
    pollMs = DEFAULT_FILE_TAIL_POLL_MS,
  ) {
    this.timer = setInterval(() => this.poke(), pollMs);
    this.timer.unref();
    this.poke();
  }

  /** Reads what was appended now (also called by the watcher and the poll). */
  poke(): void {
    if (this.stopped) return;
    if (this.watcher === undefined) {
      try {
        this.watcher = fs.watch(this.file, () => this.poke());
        this.watcher.on('error', () => {
          this.watcher?.close();
          this.watcher = undefined;
        });
      } catch {
        // The file is not there yet: the poll tries again.
      }
    }
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    this.readAppended();
    this.reading = false;
    if (this.again) {
      this.again = false;
      this.poke();
    }
  }

  private readAppended(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch {
      return;
    }
    try {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      for (;;) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, this.offset);
        if (n === 0) break;
        this.offset += n;
        this.partial += chunk.subarray(0, n).toString('latin1');
        const lines = this.partial.split('\n');
        this.partial = lines.pop() ?? '';
        for (const line of lines) this.onLine(line);
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Reads what is left (complete lines only) and stops following. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.poke();
    this.stopped = true;
    clearInterval(this.timer);
    this.watcher?.close();
  }
}
