import { EventChannel } from '../../vmm/qemu/event-channel';

describe('QEMU event channel', () => {
  it('hands a waiter the first later item that matches, and every item to a stream', async () => {
    const channel = new EventChannel<number>();
    const even = channel.next('an even number', (n) => n % 2 === 0);
    const stream = channel.stream();
    const firstTwo = (async () => [(await stream.next()).value, (await stream.next()).value])();
    channel.emit(1);
    channel.emit(4);
    await expect(even).resolves.toBe(4);
    await expect(firstTwo).resolves.toEqual([1, 4]);
  });

  it('rejects a waiter with a timeout error that says what it waited for', async () => {
    const channel = new EventChannel<number>();
    await expect(channel.next('the number 7', (n) => n === 7, { timeoutMs: 10 })).rejects.toMatchObject({
      name: 'QemuTimeoutError',
      message: 'timed out after 10 ms waiting for the number 7',
    });
  });

  it('rejects pending and later waiters with the close reason, and ends streams', async () => {
    const channel = new EventChannel<number>();
    const pending = channel.next('anything', () => true);
    const stream = channel.stream();
    const ended = stream.next();
    channel.close(new Error('QEMU exited'));
    await expect(pending).rejects.toThrow('QEMU exited');
    await expect(channel.next('anything', () => true)).rejects.toThrow('QEMU exited');
    await expect(ended).resolves.toEqual({ value: undefined, done: true });
  });
});
