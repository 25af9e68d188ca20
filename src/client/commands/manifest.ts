/**
 * Every cpcc command as the help lists it, and the group (index.ts) whose
 * file defines it: enough to print `cpcc --help` and to load the one file a
 * command needs, without loading any command file.
 *
 * Written by `npm run command-manifest` from the command files themselves
 * (scripts/write-command-manifest.ts); a test fails when it is out of date.
 */
import type { CommandGroup } from './index.js';

export interface ManifestEntry {
  group: CommandGroup;
  name: string;
  aliases: string[];
  /** The command as the help's list shows it: name, alias, `[options]`, arguments. */
  term: string;
  summary: string;
}

export const COMMAND_MANIFEST: readonly ManifestEntry[] = [
  {"group":"servers","name":"add-server","aliases":[],"term":"add-server [options] <host> [port]","summary":"trust a server (by its CA fingerprint) and make it current"},
  {"group":"servers","name":"use-server","aliases":[],"term":"use-server [name]","summary":"make a configured server current; without NAME, list them"},
  {"group":"servers","name":"login","aliases":[],"term":"login [options] [user]","summary":"log in (default user cpc-admin); the token is kept in the config folder"},
  {"group":"servers","name":"logout","aliases":[],"term":"logout","summary":"end the session on the server and forget the token"},
  {"group":"servers","name":"server-info","aliases":[],"term":"server-info","summary":"show the server and who you are on it"},
  {"group":"users","name":"add-user","aliases":[],"term":"add-user [options] <user>","summary":"add a user (super users only); the password is asked for"},
  {"group":"users","name":"passwd","aliases":[],"term":"passwd [options] [user]","summary":"change your password, or (super users) set another user's"},
  {"group":"users","name":"users","aliases":[],"term":"users","summary":"list the users (super users only)"},
  {"group":"users","name":"rm-user","aliases":[],"term":"rm-user [options] <user>","summary":"remove a user and log out their sessions (super users only; not while they own projects)"},
  {"group":"users","name":"grant-access","aliases":[],"term":"grant-access <user> [project]","summary":"give a user full access to a project (default: the current one); owner or super user"},
  {"group":"users","name":"revoke-access","aliases":[],"term":"revoke-access <user> [project]","summary":"take a user's access to a project away (default: the current one); owner or super user"},
  {"group":"projects","name":"start","aliases":[],"term":"start <project>","summary":"create a project and make it current"},
  {"group":"projects","name":"projects","aliases":["p"],"term":"projects|p","summary":"list the projects you can see"},
  {"group":"projects","name":"use","aliases":["cd"],"term":"use|cd <project>","summary":"make an existing project current"},
  {"group":"projects","name":"pwd","aliases":[],"term":"pwd","summary":"the current server and project"},
  {"group":"projects","name":"rm","aliases":[],"term":"rm [options] <project>","summary":"remove a project and all its jobs"},
  {"group":"projects","name":"status","aliases":["s"],"term":"status|s [project]","summary":"count the jobs of a project (default: the current one) by state"},
  {"group":"project-defaults","name":"project-set","aliases":[],"term":"project-set [options] [project]","summary":"set a project's defaults (default: the current one): the retry with more of jobs submitted without their own"},
  {"group":"jobs","name":"submit","aliases":[],"term":"submit [options] [command...]","summary":"submit a job (cpcc submit [options] -- COMMAND ARGS...) or many (--file)"},
  {"group":"jobs","name":"jobs","aliases":[],"term":"jobs [options]","summary":"list the current project's jobs, newest first"},
  {"group":"jobs","name":"job","aliases":[],"term":"job <id>","summary":"show one job and its attempts"},
  {"group":"jobs","name":"logs","aliases":[],"term":"logs [options] <id>","summary":"print a job's output (as far as it has arrived while the job runs)"},
  {"group":"jobs","name":"cancel","aliases":[],"term":"cancel [options] [ids...]","summary":"cancel jobs: by id, - for ids on stdin, or --state/--name/--failed; each gets its outcome"},
  {"group":"jobs","name":"retry","aliases":[],"term":"retry [options] [ids...]","summary":"queue failed or cancelled jobs again: by id, - for ids on stdin, or --failed/--name; each gets its outcome"},
  {"group":"jobs","name":"wait","aliases":[],"term":"wait [options] [ids...]","summary":"wait until the jobs named, or those you submitted since the last wait, have finished; exit 1 if any failed or was cancelled"},
  {"group":"jobs","name":"why","aliases":[],"term":"why <id>","summary":"why a job is not running: dependencies, no worker big enough, an old attempt, or room and turns"},
  {"group":"jobs","name":"queue","aliases":["q"],"term":"queue|q [options]","summary":"the queued jobs, by priority then age (users take turns between them)"},
  {"group":"jobs","name":"running","aliases":["r"],"term":"running|r [options]","summary":"the current project's running jobs, with their worker and how long they have run"},
  {"group":"stats","name":"stats","aliases":[],"term":"stats [options] [project]","summary":"a project's jobs by state and end, and their usage: wall, CPU, memory, efficiency (min, median, p90, max)"},
  {"group":"watch","name":"watch","aliases":[],"term":"watch [options] [project]","summary":"follow a project live: counts by state, running jobs, recent failures"},
  {"group":"files","name":"outputs","aliases":[],"term":"outputs <job-id>","summary":"the files a job kept"},
  {"group":"files","name":"getf","aliases":[],"term":"getf [options] <job-id-or-@value> [name]","summary":"download a file a job kept (JOB_ID NAME), or a project value's file (@NAME)"},
  {"group":"files","name":"set","aliases":[],"term":"set <name> <value>","summary":"set a project value to a text"},
  {"group":"files","name":"setf","aliases":[],"term":"setf <name> <file>","summary":"set a project value to a file (uploaded)"},
  {"group":"files","name":"get","aliases":[],"term":"get <name>","summary":"show a project value"},
  {"group":"files","name":"ls","aliases":[],"term":"ls [prefix]","summary":"list the project's values"},
  {"group":"files","name":"unset","aliases":[],"term":"unset <name>","summary":"remove a project value"},
  {"group":"save-load","name":"save","aliases":[],"term":"save [options] <project> [file]","summary":"save a project (jobs, values, files, history) to a tar (default: PROJECT.tar)"},
  {"group":"save-load","name":"load","aliases":[],"term":"load [options] <file> <project>","summary":"load a saved project from a tar as a new project of yours, on this server or any other"},
  {"group":"workers","name":"workers","aliases":[],"term":"workers","summary":"the workers registered with the server"},
  {"group":"workers","name":"heartbeats","aliases":["h"],"term":"heartbeats|h","summary":"running attempts and their lease deadlines"},
  {"group":"workers","name":"worker-token","aliases":[],"term":"worker-token","summary":"tokens that workers register with (super user)"},
  {"group":"pilots","name":"pilots","aliases":[],"term":"pilots [options]","summary":"pilots started through batch systems: state, batch id, worker, age, last error (super user)"},
  {"group":"federation","name":"connect-server","aliases":[],"term":"connect-server [options] [host] [port]","summary":"send a connection request to another server (PORT: its unsecure port, default 14807)"},
  {"group":"federation","name":"connected-servers","aliases":["cs"],"term":"connected-servers|cs","summary":"sent and received connection requests, and the connected nodes"},
  {"group":"federation","name":"trust","aliases":[],"term":"trust [options] [server_id]","summary":"trust a server that sent a connection request (see connected-servers)"},
  {"group":"federation","name":"list-nodes","aliases":[],"term":"list-nodes","summary":"the connected nodes in priority order (lower is asked for work first)"},
  {"group":"federation","name":"node-pri","aliases":["set-pri","change-node-priority"],"term":"node-pri|set-pri <server_id> <priority>","summary":"move a connected node to a place in the priority list (0 first); the others shift"},
  {"group":"federation","name":"disconnect","aliases":[],"term":"disconnect <server_id>","summary":"stop trusting a connected node and tell it, or withdraw a connection request"},
  {"group":"network","name":"ping","aliases":[],"term":"ping","summary":"one round trip to the current server (connection included): its time and the server id"},
  {"group":"network","name":"version","aliases":[],"term":"version","summary":"cpcc's version and the current server's"},
  {"group":"network","name":"network","aliases":[],"term":"network","summary":"this server and its peers: priorities, link states, when each was last seen (super user)"},
  {"group":"admin","name":"worker-failed","aliases":[],"term":"worker-failed <worker_id>","summary":"mark a worker lost now: its running jobs are re-queued instead of waiting for their leases (super user)"},
  {"group":"admin","name":"command-failed","aliases":[],"term":"command-failed <job_id>","summary":"mark a job's running attempt lost now; the job is re-queued as after a lost lease"},
  {"group":"admin","name":"stop-server","aliases":[],"term":"stop-server","summary":"stop the current server cleanly (super user)"},
  {"group":"admin","name":"set-weight","aliases":[],"term":"set-weight <user|project> <name> <n>","summary":"set a user's or a project's share of the queue (1 to 1000, default 1; super user)"},
  {"group":"admin","name":"weights","aliases":[],"term":"weights","summary":"the users and projects whose weight is not 1 (super user)"},
  {"group":"completion","name":"completion","aliases":[],"term":"completion [options] [shell]","summary":"print a completion script for bash, zsh or fish (commands, options, job ids)"},
];
