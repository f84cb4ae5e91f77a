/**
 * What the migration engine reaches outside its VMM process: the message bus (NATS) and the shared
 * store. Handed in rather than reached for, so a unit test runs the real sender, receiver, credit
 * and handover over an in-process bus; the defaults are what a VMM uses.
 */
import type { PageStore } from '../store/page-store';
import { openPageStore } from '../store/open-store';
import type { MessageBus } from './message-bus';
import { connectNats, type NatsClientConfig } from './nats-client';

/** The engine's dependencies; see DEFAULT_ENGINE_DEPS. */
export interface EngineDeps {
  /**
   * Connects `hostId` to the bus as `config` says; `name` names the connection and `log` gets the
   * errors the bus reports later. Throws if the first connection fails.
   */
  connect(config: NatsClientConfig, hostId: string, name: string, log: (msg: string) => void): Promise<MessageBus>;
  /** The store a migration names (a directory path or `s3://bucket/prefix`). */
  openStore(ref: string): PageStore;
}

/** A real NATS connection (nats-client.ts) and the process's store cache (store/open-store.ts). */
export const DEFAULT_ENGINE_DEPS: EngineDeps = {
  connect: connectNats,
  openStore: (ref) => openPageStore(ref),
};

/** `deps` with each dependency it leaves out taken from DEFAULT_ENGINE_DEPS (a new object). */
export function resolveEngineDeps(deps: Partial<EngineDeps> = {}): EngineDeps {
  return { ...DEFAULT_ENGINE_DEPS, ...deps };
}
