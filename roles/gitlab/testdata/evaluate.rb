# Evaluates a gitlab.rb the way Omnibus does, closely enough for glbootstrap's tests, and prints
# every setting as JSON:
#
#   GLB_ROOT=/tmp/root ruby evaluate.rb /etc/gitlab/gitlab.rb
#
# Omnibus evaluates gitlab.rb with instance_eval in an object where each root (gitlab_rails,
# nginx, ...) is a hash of settings, external_url and friends are methods taking one value, and
# from_file evaluates another file in the same object. Paths are read under GLB_ROOT (File.exist?
# too), so a test can lay out /etc/gitlab in a temp directory. Nested hashes auto-vivify, as
# Omnibus's Gitlab::ConfigMash does while gitlab.rb is evaluated (settings_dsl.rb), so
# gitlab_rails['nginx']['listen_port'] = 443 works without gitlab_rails['nginx'] = {} first.
require 'json'

ROOT = ENV.fetch('GLB_ROOT', '')

module Rooted
  def exist?(path)
    super(ROOT + path)
  end
end
File.singleton_class.prepend(Rooted)

class OmnibusLike
  attr_reader :hashes, :calls

  def initialize
    vivify = proc { |h, k| h[k] = Hash.new(&vivify) }
    @hashes = Hash.new(&vivify)
    @calls = {}
  end

  def external_url(url)
    @calls['external_url'] = url
  end

  def from_file(path)
    instance_eval(File.read(ROOT + path), path, 1)
  end

  # gitlab_rails['key'] = value (no argument: a hash root) or registry_external_url 'x'.
  def method_missing(name, *args)
    return @hashes[name.to_s] if args.empty?
    return @calls[name.to_s] = args.first if args.length == 1

    super
  end

  def respond_to_missing?(_name, _private = false)
    true
  end
end

o = OmnibusLike.new
o.from_file(ARGV.fetch(0))
puts JSON.generate({ 'calls' => o.calls, 'settings' => o.hashes })
