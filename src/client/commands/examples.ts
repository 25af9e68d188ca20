/**
 * Two or three examples at the end of each command's `--help`, keyed by the
 * command's name (a subcommand by its path, `worker-token create`). Kept in
 * one file, apart from the command files, and loaded only when help is shown
 * (cli.ts). A test checks that every command has some.
 */
export const EXAMPLES: Record<string, readonly string[]> = {
  'add-server': ['cpcc add-server cluster.example.org', 'cpcc add-server 10.0.0.5 14807 --fingerprint AB:CD:...'],
  'use-server': ['cpcc use-server', 'cpcc use-server cluster'],
  login: ['cpcc login', 'cpcc login alice', 'echo "$PASSWORD" | cpcc login alice --password-stdin'],
  logout: ['cpcc logout', 'cpcc -s cluster logout'],
  'server-info': ['cpcc server-info', 'cpcc server-info --json'],
  'add-user': ['cpcc add-user alice', 'cpcc add-user bob --superuser', 'printf "%s\\n" "$PW" | cpcc add-user carol --password-stdin'],
  passwd: ['cpcc passwd', 'cpcc passwd alice'],
  users: ['cpcc users', 'cpcc users --json'],
  'rm-user': ['cpcc rm-user alice', 'cpcc rm-user alice --yes'],
  'grant-access': ['cpcc grant-access bob', 'cpcc grant-access bob paper-2'],
  'revoke-access': ['cpcc revoke-access bob', 'cpcc revoke-access bob paper-2'],
  start: ['cpcc start demo', 'cpcc start "md-runs"'],
  projects: ['cpcc projects', 'cpcc p --json'],
  use: ['cpcc use demo', 'cpcc cd md-runs'],
  pwd: ['cpcc pwd'],
  rm: ['cpcc rm demo', 'cpcc rm demo --yes'],
  stats: ['cpcc stats', 'cpcc stats md-runs --by name', 'cpcc stats --json'],
  status: ['cpcc status', 'cpcc s md-runs', 'cpcc status --json'],
  'project-set': ['cpcc project-set --retry-oom 1.5:16G', 'cpcc project-set md-runs --retry-oom 2:64G --retry-timeout 2:12h --retry-more 2', 'cpcc project-set --clear-retry'],
  submit: [
    'cpcc submit -- ./simulate --steps 1000',
    'cpcc submit --cores 4 --memory 8G --time 2h --retry-oom 1.5:32G -- ./run.sh input.dat',
    'cpcc submit --file jobs.ndjson    # one job per line; docs/JOB-FILE.md lists the fields',
  ],
  jobs: ['cpcc jobs', "cpcc jobs --state failed --name 'fit-*' --since 2h", 'cpcc jobs --columns wall,cpu,mem,eff --state done'],
  job: ['cpcc job 3f2a9c1e', 'cpcc job 3f2a9c1e --json'],
  logs: ['cpcc logs 3f2a9c1e', 'cpcc logs 3f2a9c1e --stderr --tail 50', 'cpcc logs -f 3f2a9c1e'],
  cancel: ['cpcc cancel 3f2a9c1e 77b0d4a2', "cpcc cancel --state queued --name 'scan-*' --yes", 'cpcc jobs --state queued --json | jq -r ".jobs[].id" | cpcc cancel -'],
  retry: ['cpcc retry 3f2a9c1e', 'cpcc retry --failed'],
  wait: ['cpcc wait', 'cpcc wait 3f2a9c1e 77b0d4a2 --timeout 2h', 'cpcc -p md-runs wait'],
  why: ['cpcc why 3f2a9c1e', 'cpcc why 3f2a9c1e --json'],
  queue: ['cpcc queue', 'cpcc q --limit 20'],
  running: ['cpcc running', 'cpcc r --all'],
  watch: ['cpcc watch', 'cpcc watch --all', 'cpcc watch md-runs --lines'],
  outputs: ['cpcc outputs 3f2a9c1e', 'cpcc outputs 3f2a9c1e --json'],
  getf: ['cpcc getf 3f2a9c1e result.dat', 'cpcc getf 3f2a9c1e result.dat -o - | head', 'cpcc getf @topology -o topol.top'],
  set: ['cpcc set temperature 300', 'cpcc set note "second run, new force field"'],
  setf: ['cpcc setf topology topol.top', 'cpcc setf start-structure conf.gro'],
  get: ['cpcc get temperature', 'cpcc get topology --json'],
  ls: ['cpcc ls', 'cpcc ls run-'],
  unset: ['cpcc unset temperature'],
  save: ['cpcc save demo', 'cpcc save demo backup.tar', 'cpcc save demo -o - | gzip > demo.tar.gz'],
  load: ['cpcc load demo.tar demo', 'cpcc load demo.tar demo-copy --new-ids', 'cpcc -s other load demo.tar demo'],
  workers: ['cpcc workers', 'cpcc workers --json'],
  heartbeats: ['cpcc heartbeats', 'cpcc h --json'],
  'worker-token': ['cpcc worker-token create lab-pcs', 'cpcc worker-token list', 'cpcc worker-token revoke 5d1e0c2b'],
  'worker-token create': ['cpcc worker-token create lab-pcs', 'cpcc worker-token create gpu-node --max-workers 1'],
  'worker-token list': ['cpcc worker-token list', 'cpcc worker-token list --json'],
  'worker-token revoke': ['cpcc worker-token revoke 5d1e0c2b'],
  pilots: ['cpcc pilots', 'cpcc pilots --all'],
  'connect-server': ['cpcc connect-server other.example.org', 'cpcc connect-server 10.0.0.7 14807 --fingerprint AB:CD:...'],
  'connected-servers': ['cpcc connected-servers', 'cpcc cs --json'],
  trust: ['cpcc trust', 'cpcc trust 0b4f5c3e-... --fingerprint AB:CD:...'],
  'list-nodes': ['cpcc list-nodes', 'cpcc list-nodes --json'],
  'node-pri': ['cpcc node-pri 0b4f5c3e-... 0', 'cpcc set-pri 0b4f5c3e-... 2'],
  disconnect: ['cpcc disconnect 0b4f5c3e-...'],
  ping: ['cpcc ping', 'cpcc -s cluster ping'],
  version: ['cpcc version', 'cpcc version --json'],
  network: ['cpcc network', 'cpcc network --json'],
  'worker-failed': ['cpcc worker-failed 9c0e1d2f', 'cpcc workers && cpcc worker-failed 9c0e1d2f'],
  'command-failed': ['cpcc command-failed 3f2a9c1e'],
  'stop-server': ['cpcc stop-server', 'cpcc -s cluster stop-server'],
  'set-weight': ['cpcc set-weight user alice 3', 'cpcc set-weight project urgent 10'],
  weights: ['cpcc weights', 'cpcc weights --json'],
  completion: ['source <(cpcc completion bash)        # in ~/.bashrc', 'cpcc completion zsh > "${fpath[1]}/_cpcc"', 'cpcc completion fish > ~/.config/fish/completions/cpcc.fish'],
};

/** The examples block of `--help`, or '' for a command without any. */
export function examplesText(path: string): string {
  const list = EXAMPLES[path];
  if (!list || list.length === 0) return '';
  return `\nExamples:\n${list.map((e) => `  $ ${e}`).join('\n')}\n`;
}
