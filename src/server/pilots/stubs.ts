import { LauncherError, type BatchStatus, type Launcher, type LauncherKind } from './launcher.js';

/**
 * Launchers for batch systems cpc cannot drive yet. They may be configured
 * (so a site can write its settings down now), and every call fails with a
 * plain "not built yet", which the manager logs and shows in `cpcc pilots`
 * like any other refusal, with back-off.
 */
class NotBuiltLauncher implements Launcher {
  constructor(
    readonly kind: LauncherKind,
    private readonly title: string,
  ) {}

  submit(): Promise<string> {
    return Promise.reject(this.error());
  }

  status(batchIds: readonly string[]): Promise<Map<string, BatchStatus>> {
    return batchIds.length === 0 ? Promise.resolve(new Map()) : Promise.reject(this.error());
  }

  cancel(): Promise<void> {
    return Promise.reject(this.error());
  }

  private error(): LauncherError {
    return new LauncherError('not-built', `the ${this.title} launcher is not built yet; only kind "slurm" submits pilots`);
  }
}

export class HTCondorLauncher extends NotBuiltLauncher {
  constructor() {
    super('htcondor', 'HTCondor');
  }
}

export class PbsLauncher extends NotBuiltLauncher {
  constructor() {
    super('pbs', 'PBS');
  }
}
