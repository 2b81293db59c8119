make_content() {
  rm -rf "$WORK"; mkdir -p "$WORK"/{www/f,post,apache/logs,nginx/tmp,logs}
  local s
  for s in 200 500 1000 2000 5000 10000 20000 50000 100000 200000; do
    head -c "$s" /dev/urandom > "$WORK/www/f/r$s"
  done
  # JSON documents (compressible; nginx gzips them -> chunked backend responses)
  for s in 2000 20000 200000; do
    awk -v n="$s" 'BEGIN{srand(7); printf "["; o=1;
      for(i=0; o<n-120; i++){ l=sprintf("{\"id\":%d,\"sku\":\"SKU-%06d\",\"name\":\"item %d\",\"price\":%.2f,\"qty\":%d,\"tags\":[\"t%d\",\"t%d\"]},\n",
        i, int(rand()*999999), i, rand()*500, int(rand()*40), int(rand()*50), int(rand()*50)); printf "%s", l; o+=length(l)}
      printf "{\"end\":true}]\n"}' > "$WORK/www/f/j$s.json"
  done
  echo '<html><body>pf</body></html>' > "$WORK/www/index.html"
  ln -s . "$WORK/www/nk"; ln -s . "$WORK/www/h10"; ln -s . "$WORK/www/chunkpost"
  for s in 1024 4096 16384 65536 262144 1048576; do head -c "$s" /dev/urandom > "$WORK/post/b$s"; done
  chmod -R a+rX "$WORK"
}

start_nginx() {
  rm -f "$WORK/nginx/sink.sock" "$WORK/nginx/nginx.pid"
  cat > "$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body; proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fcgi; uwsgi_temp_path $WORK/nginx/tmp/uwsgi; scgi_temp_path $WORK/nginx/tmp/scgi;
  types { text/html html; application/json json; application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 60s; keepalive_requests 10000;
  gzip on; gzip_types application/json; gzip_min_length 256; gzip_comp_level 1;
  server {
    listen $BAK_IP:8080 backlog=8192;
    server_name backend;
    root $WORK/www;
    client_max_body_size 4m; client_body_buffer_size 2m;
    # POST sink: nginx reads the whole request body (proxy_request_buffering), then the
    # tiny JSON answer is fetched over a unix socket (not on the captured interface).
    location ~ /sink\$ {
      proxy_pass http://unix:$WORK/nginx/sink.sock;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_http_version 1.1; proxy_set_header Connection "";
    }
  }
  server {
    listen unix:$WORK/nginx/sink.sock;
    location / { default_type application/json; return 200 '{"status":"stored"}\n'; }
  }
}
EOF
  ip netns exec $NS_B nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
    >"$WORK/logs/nginx.out" 2>&1 &
  echo $! >> $PIDFILE
}

start_apache() {
  rm -f "$WORK/apache/httpd.pid"
  cat > "$WORK/apache/httpd.conf" <<EOF
ServerRoot "$WORK/apache"
PidFile "$WORK/apache/httpd.pid"
Listen $PRX_FRONT:80
ListenBacklog 8192
LoadModule mpm_event_module $MODDIR/mod_mpm_event.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule env_module $MODDIR/mod_env.so
LoadModule proxy_module $MODDIR/mod_proxy.so
LoadModule proxy_http_module $MODDIR/mod_proxy_http.so
User www-data
Group www-data
ServerName pf-proxy
ErrorLog "$WORK/apache/logs/error.log"
LogLevel warn
StartServers 2
ServerLimit 2
ThreadsPerChild 64
MaxRequestWorkers 128
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 1000
KeepAliveTimeout 5
Timeout 30
ProxyRequests Off
ProxyPreserveHost On
ProxyTimeout 30
ProxyPass "/" "http://$BAK_IP:8080/" ttl=60
ProxyPassReverse "/" "http://$BAK_IP:8080/"
<Location "/nk/">
  SetEnv proxy-nokeepalive 1
</Location>
<Location "/h10/">
  SetEnv force-proxy-request-1.0 1
</Location>
<Location "/chunkpost/">
  SetEnv proxy-sendchunked 1
</Location>
EOF
  ip netns exec $NS_P /usr/sbin/apache2 -d "$WORK/apache" -f "$WORK/apache/httpd.conf" -DFOREGROUND \
    >"$WORK/logs/apache.out" 2>&1 &
  echo $! >> $PIDFILE
}

write_lua() {
  cat > "$WORK/mix.lua" <<'EOF'
-- weighted request mix; args: [close]
local gets = {
  {"/f/r200",10},{"/f/r500",10},{"/f/r1000",10},{"/f/r2000",8},{"/f/r5000",8},
  {"/f/r10000",8},{"/f/r20000",6},{"/f/r50000",5},{"/f/r100000",4},{"/f/r200000",3},
  {"/f/j2000.json",5},{"/f/j20000.json",4},{"/f/j200000.json",2},
  {"/nk/f/r1000",4},{"/nk/f/r20000",2},{"/nk/f/j20000.json",1},
  {"/h10/f/r5000",3},{"/h10/f/j20000.json",2},{"/nope/missing.html",2},
}
local posts = { {1024,30},{4096,20},{16384,15},{65536,10},{262144,5},{1048576,2} }
local ppaths = { {"/sink",60},{"/chunkpost/sink",25},{"/nk/sink",15} }
local function expand(t) local o = {} for _,e in ipairs(t) do for _=1,e[2] do o[#o+1]=e[1] end end return o end
local G, P, PP = expand(gets), expand(posts), expand(ppaths)
local bodies, chunked, close, n = {}, {}, false, 0
local agents = {"Mozilla/5.0 (X11; Linux x86_64) pf/1.0", "curl/8.5.0", "okhttp/4.12.0", "python-requests/2.31"}
function init(args)
  close = (args[1] == "close")
  math.randomseed(os.time() + math.floor(os.clock()*1e6) + (args[2] and tonumber(args[2]) or 0))
  for _,e in ipairs(posts) do
    local chunk = {}
    for i=1,64 do chunk[i] = string.char(math.random(0,255)) end
    local s = table.concat(chunk)
    bodies[e[1]] = string.rep(s, e[1]/64)
    -- the same body as a chunked request body (uneven chunk sizes, as streaming clients send)
    local c, off, sizes, k = {}, 0, {8192, 4000, 16384, 1500}, 0
    while off < e[1] do
      k = k + 1
      local len = math.min(sizes[(k % #sizes) + 1], e[1] - off)
      c[#c+1] = string.format("%x\r\n", len) .. bodies[e[1]]:sub(off + 1, off + len) .. "\r\n"
      off = off + len
    end
    c[#c+1] = "0\r\n\r\n"
    chunked[e[1]] = table.concat(c)
  end
end
-- wrk.format always adds Content-Length, so chunked requests are written by hand
local function raw_chunked(path, h, body)
  local s = {"POST " .. path .. " HTTP/1.1", "Host: " .. wrk.headers["Host"], "Transfer-Encoding: chunked"}
  for k, v in pairs(h) do s[#s+1] = k .. ": " .. v end
  return table.concat(s, "\r\n") .. "\r\n\r\n" .. body
end
function request()
  n = n + 1
  local h = { ["User-Agent"] = agents[math.random(#agents)], ["X-Request-Id"] = string.format("%08x%08x", math.random(0,0x7fffffff), n) }
  if close then h["Connection"] = "close" end
  if math.random() < 0.12 then
    local sz = P[math.random(#P)]
    h["Content-Type"] = "application/octet-stream"
    local path = PP[math.random(#PP)]
    if path == "/chunkpost/sink" then return raw_chunked(path, h, chunked[sz]) end
    return wrk.format("POST", path, h, bodies[sz])
  end
  local p = G[math.random(#G)]
  if p:find("json") and math.random() < 0.7 then h["Accept-Encoding"] = "gzip, deflate" end
  return wrk.format("GET", p, h)
end
EOF
}

