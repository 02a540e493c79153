// redactCmdline from tables: argv in, argv out.
import { describe, expect, it } from 'vitest';
import { REDACTED, looksSecret, redactCmdline } from '../../lib/redact.js';

const X = REDACTED;

describe('redactCmdline', () => {
  it.each<[string, string[], string[]]>([
    // --name=value, -name=value, name=value
    ['--password=value', ['/usr/bin/app', '--password=hunter2'], ['/usr/bin/app', `--password=${X}`]],
    ['single-dash -password=value', ['app', '-password=hunter2'], ['app', `-password=${X}`]],
    ['mixed case --DB-Password', ['app', '--DB-Password=s3cr3t'], ['app', `--DB-Password=${X}`]],
    ['--api-key=', ['app', '--api-key=abc', '--apikey=def', '--api_key=ghi'], ['app', `--api-key=${X}`, `--apikey=${X}`, `--api_key=${X}`]],
    ['--access-key and --secret', ['aws', '--access-key=AKIA', '--secret=zz'], ['aws', `--access-key=${X}`, `--secret=${X}`]],
    ['--token, --auth, --credentials, --session, --passwd', ['app', '--token=t', '--auth=a', '--credentials=c', '--session=s', '--passwd=p'],
      ['app', `--token=${X}`, `--auth=${X}`, `--credentials=${X}`, `--session=${X}`, `--passwd=${X}`]],
    ['name=value (environment style)', ['env', 'DB_PASSWORD=pw', 'GITHUB_TOKEN=ghp_x', 'HOME=/root'], ['env', `DB_PASSWORD=${X}`, `GITHUB_TOKEN=${X}`, 'HOME=/root']],
    ['java -D property', ['java', '-Djavax.net.ssl.keyStorePassword=changeit', '-Dfile.encoding=UTF-8'], ['java', `-Djavax.net.ssl.keyStorePassword=${X}`, '-Dfile.encoding=UTF-8']],
    ['a value with = in it is masked whole', ['app', '--secret=a=b=c'], ['app', `--secret=${X}`]],
    ['empty value stays empty', ['app', '--password='], ['app', '--password=']],
    // --name value
    ['--password value', ['app', '--password', 'hunter2', 'file.txt'], ['app', '--password', X, 'file.txt']],
    ['-passin value (openssl)', ['openssl', 'rsa', '-passin', 'pass:hunter2'], ['openssl', 'rsa', '-passin', X]],
    ['--token value, then a normal option', ['app', '--token', 'abc', '--verbose'], ['app', '--token', X, '--verbose']],
    ['--password followed by an option masks nothing', ['app', '--password', '--verbose'], ['app', '--password', '--verbose']],
    ['--password at the end', ['app', '--password'], ['app', '--password']],
    ['--no-password is a flag', ['app', '--no-password', 'input.txt'], ['app', '--no-password', 'input.txt']],
    ['the masked value is not read as an option', ['app', '--secret', 'token=1', 'x'], ['app', '--secret', X, 'x']],
    // over-masking on purpose (documented): names merely containing a secret word
    ['--keyboard is masked too (substring match)', ['app', '--keyboard=us'], ['app', `--keyboard=${X}`]],
    // not secret
    ['ordinary options untouched', ['nginx', '-g', 'daemon off;', '--port=8080', '-p', '80', 'HOME=/x'], ['nginx', '-g', 'daemon off;', '--port=8080', '-p', '80', 'HOME=/x']],
    ['a path with key= in it is not an assignment', ['app', '/etc/app/key=1'], ['app', '/etc/app/key=1']],
    ['plain -p x is not masked for unknown tools', ['myapp', '-p', 'hunter2'], ['myapp', '-p', 'hunter2']],
    // URLs with user:password@
    ['URL credentials', ['psql', 'postgres://alice:hunter2@db.example/app'], ['psql', `postgres://alice:${X}@db.example/app`]],
    ['URL credentials inside an option value', ['app', '--db=mysql://root:pw@localhost:3306/x'], ['app', `--db=mysql://root:${X}@localhost:3306/x`]],
    ['URL credentials inside an environment-style value', ['env', 'DATABASE_URL=redis://:pw@cache:6379'], ['env', `DATABASE_URL=redis://:${X}@cache:6379`]],
    ['two URLs in one argument', ['app', 'http://a:1@h1,http://b:2@h2'], ['app', `http://a:${X}@h1,http://b:${X}@h2`]],
    ['URL without password untouched', ['curl', 'https://user@example.com/', 'https://example.com:8443/a'], ['curl', 'https://user@example.com/', 'https://example.com:8443/a']],
    ['URL credentials in argv[0] (process that rewrote its title)', ['worker http://u:p@h'], [`worker http://u:${X}@h`]],
    // headers
    ['Authorization: Bearer keeps the scheme', ['curl', '-H', 'Authorization: Bearer eyJhbGciOi', 'https://api'], ['curl', '-H', `Authorization: Bearer ${X}`, 'https://api']],
    ['Authorization: Basic', ['curl', '-H', 'authorization:Basic dXNlcjpwYXNz'], ['curl', '-H', `authorization:Basic ${X}`]],
    ['Authorization with a bare token', ['curl', '-H', 'Authorization: abcdef'], ['curl', '-H', `Authorization: ${X}`]],
    ['Proxy-Authorization', ['curl', '-H', 'Proxy-Authorization: Basic abc'], ['curl', '-H', `Proxy-Authorization: Basic ${X}`]],
    ['X-Api-Key header', ['curl', '-H', 'X-Api-Key: 12345'], ['curl', '-H', `X-Api-Key: ${X}`]],
    ['ordinary header untouched', ['curl', '-H', 'Accept: application/json'], ['curl', '-H', 'Accept: application/json']],
    // known tools
    ['mysql -pSECRET', ['/usr/bin/mysql', '-u', 'root', '-phunter2', 'db'], ['/usr/bin/mysql', '-u', 'root', `-p${X}`, 'db']],
    ['mysql -p alone prompts: the next word is the database', ['mysql', '-p', 'db'], ['mysql', '-p', 'db']],
    ['mysqldump --password=', ['mysqldump', '--password=pw', 'db'], ['mysqldump', `--password=${X}`, 'db']],
    ['sshpass -p SECRET', ['sshpass', '-p', 'hunter2', 'ssh', 'host'], ['sshpass', '-p', X, 'ssh', 'host']],
    ['sshpass -pSECRET', ['sshpass', '-phunter2', 'ssh', 'host'], ['sshpass', `-p${X}`, 'ssh', 'host']],
    ['redis-cli -a SECRET', ['redis-cli', '-h', 'cache', '-a', 'hunter2', 'PING'], ['redis-cli', '-h', 'cache', '-a', X, 'PING']],
    // edge cases
    ['empty argv', [], []],
    ['argv[0] only', ['/bin/sleep'], ['/bin/sleep']],
    ['empty arguments kept', ['app', '', '--token', ''], ['app', '', '--token', '']],
    ['non-ASCII values', ['app', '--password=pässwörd', 'naïve'], ['app', `--password=${X}`, 'naïve']],
  ])('%s', (_name, input, expected) => {
    const copy = [...input];
    const out = redactCmdline(input);
    expect(out).toEqual(expected);
    expect(out).toHaveLength(input.length);
    expect(input).toEqual(copy); // pure: the input is not changed
  });
});

describe('looksSecret', () => {
  it.each<[string, boolean]>([
    ['password', true], ['PASSWD', true], ['db-pass', true], ['client_secret', true], ['access_token', true], ['api-key', true],
    ['apikey', true], ['AccessKey', true], ['auth', true], ['credentials', true], ['sessionid', true],
    ['port', false], ['host', false], ['user', false], ['verbose', false], ['config', false], ['name', false],
  ])('%s → %s', (name, secret) => {
    expect(looksSecret(name)).toBe(secret);
  });
});
