// oidc-op: the example OpenID Provider of github.com/zitadel/oidc/v3 (an OpenID Foundation certified
// library), configured for Gantry's tests. Everything protocol-related (discovery, JWKS, the
// authorization code flow with PKCE, the device authorization grant, token signing, the login and
// device pages) is the library's example server unchanged; this file only
//   - takes the issuer and listen address from flags instead of the hard-coded localhost:9998,
//   - registers one public client (-client-id, default "gantry") that may use the device grant and
//     the authorization code grant with PKCE, redirecting to http://127.0.0.1:<any port>/callback or /auth/callback,
//     with JWT access tokens and the user's profile and email in the ID token,
//   - loads the users from a JSON file (the example's own format, read by storage.StoreFromFile)
//     with one extra field per user, "Groups", asserted as the claim named by -groups-claim.
//
// test/env/oidc.sh writes the users file and starts this; build-tools.sh builds it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is the example's native (public, PKCE) client with the device grant and JWT access tokens
// added.
type client struct {
	op.Client
}

func (client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
}
func (client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (client) IDTokenUserinfoClaimsAssertion() bool { return true }

// store is the example's in-memory storage, serving the Gantry client and adding each user's groups
// to ID tokens, JWT access tokens and userinfo.
type store struct {
	*storage.Storage
	clientID    string
	groupsClaim string
	groups      map[string][]string // by user ID
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil || id != s.clientID {
		return c, err
	}
	return client{c}, nil
}

func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, token, scopes); err != nil {
		return err
	}
	s.addGroups(info, token.GetSubject())
	return nil
}

func (s *store) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(info, info.Subject)
	return nil
}

func (s *store) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if g, ok := s.groups[userID]; ok {
		if claims == nil {
			claims = map[string]any{}
		}
		claims[s.groupsClaim] = g
	}
	return claims, nil
}

func (s *store) addGroups(info *oidc.UserInfo, userID string) {
	if g, ok := s.groups[userID]; ok {
		info.AppendClaims(s.groupsClaim, g)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9998", "host:port to listen on")
	issuer := flag.String("issuer", "", "issuer URL (default http://<addr>)")
	clientID := flag.String("client-id", "gantry", "ID of the public client to register")
	redirect := flag.String("redirect-uri", "http://127.0.0.1/callback,http://127.0.0.1/auth/callback",
		"the client's redirect URIs, comma-separated (loopback: any port matches, RFC 8252)")
	usersFile := flag.String("users", "", "users JSON file (storage.StoreFromFile format plus \"Groups\")")
	groupsClaim := flag.String("groups-claim", "groups", "name of the claim that carries the groups")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fail := func(msg string, err error) {
		logger.Error(msg, "error", err)
		os.Exit(1)
	}
	if *usersFile == "" {
		logger.Error("-users FILE is required")
		os.Exit(2)
	}
	if *issuer == "" {
		*issuer = "http://" + *addr
	}

	users, err := storage.StoreFromFile(*usersFile)
	if err != nil {
		fail("reading "+*usersFile, err)
	}
	data, err := os.ReadFile(*usersFile)
	if err != nil {
		fail("reading "+*usersFile, err)
	}
	var extra map[string]struct {
		ID     string
		Groups []string
	}
	if err := json.Unmarshal(data, &extra); err != nil {
		fail("reading groups from "+*usersFile, err)
	}
	groups := map[string][]string{}
	for _, u := range extra {
		if u.Groups != nil {
			groups[u.ID] = u.Groups
		}
	}

	storage.RegisterClients(storage.NativeClient(*clientID, strings.Split(*redirect, ",")...))
	s := &store{Storage: storage.NewStorage(users), clientID: *clientID, groupsClaim: *groupsClaim, groups: groups}
	router := exampleop.SetupServer(*issuer, s, logger, false)
	logger.Info("listening", "addr", *addr, "issuer", *issuer)
	if err := http.ListenAndServe(*addr, router); err != nil {
		fail("serving", err)
	}
}
